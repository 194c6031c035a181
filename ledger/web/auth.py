"""Who may use the audit view: one-time login tokens, sessions, bearer tokens, CSRF.

- A login token (printed by `moltis-ledger serve`) works once: posted to the login
  form, it becomes a session, named by a random cookie (HttpOnly, SameSite=Strict).
- A bearer token (`Authorization: Bearer ...`) serves scripts; it may also be typed
  into the login form, any number of times.
- Every session has its own CSRF token, required on every POST of a form.

Tokens are compared in constant time against every known token (no early exit, no
lookup keyed by the secret itself); sessions are kept by the hash of their id, so
neither a cookie nor a token is ever a dictionary key or a log field.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

__all__ = ["Auth", "Principal", "Session"]

SESSION_COOKIE = "moltis_ledger_session"
TOKEN_BYTES = 32
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _find(given: str, known: list[tuple[bytes, str]]) -> str | None:
    """The operator whose token equals `given`, comparing against every entry."""
    probe = _digest(given)
    found: str | None = None
    for digest, operator in known:
        if hmac.compare_digest(probe, digest):
            found = operator
    return found


@dataclass(frozen=True)
class Principal:
    """An authenticated request: the operator (the actor of any write), how they
    authenticated, and the session's CSRF token (None for bearer requests)."""

    operator: str
    via: str  # "session" or "bearer"
    csrf: str | None = None


@dataclass
class Session:
    operator: str
    csrf: str
    expires: float
    digest: bytes = field(repr=False, default=b"")


class Auth:
    """The tokens and sessions of one web app (in memory: a restart logs everyone out)."""

    def __init__(self, *, session_seconds: float = SESSION_SECONDS) -> None:
        self.session_seconds = session_seconds
        self._lock = threading.Lock()
        self._login: list[tuple[bytes, str]] = []  # one-time
        self._bearer: list[tuple[bytes, str]] = []
        self._sessions: list[Session] = []

    # -- tokens ----------------------------------------------------------------------

    def issue_login_token(self, operator: str) -> str:
        """A token that logs `operator` in once (printed by `serve`)."""
        token = new_token()
        with self._lock:
            self._login.append((_digest(token), operator))
        return token

    def add_bearer_token(self, token: str, operator: str) -> None:
        """A long-lived token for scripts (`Authorization: Bearer TOKEN`)."""
        if len(token) < 16:
            raise ValueError("a bearer token must have at least 16 characters")
        with self._lock:
            self._bearer.append((_digest(token), operator))

    def bearer(self, token: str) -> Principal | None:
        with self._lock:
            known = list(self._bearer)
        operator = _find(token, known)
        return Principal(operator, "bearer") if operator is not None else None

    def login(self, token: str) -> tuple[str, Session] | None:
        """Exchange a login token (used up) or a bearer token for a new session:
        (cookie value, session), or None."""
        probe = _digest(token)
        with self._lock:
            operator = None
            for i, (digest, who) in enumerate(self._login):
                if hmac.compare_digest(probe, digest):
                    operator = who
                    del self._login[i]
                    break
            if operator is None:
                operator = _find(token, self._bearer)
            if operator is None:
                return None
            cookie = new_token()
            session = Session(operator, new_token(), time.monotonic() + self.session_seconds,
                              _digest(cookie))
            self._sessions = [s for s in self._sessions if s.expires > time.monotonic()]
            if len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(0)
            self._sessions.append(session)
        return cookie, session

    # -- sessions --------------------------------------------------------------------

    def session(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        probe = _digest(cookie)
        now = time.monotonic()
        found = None
        with self._lock:
            for s in self._sessions:
                if hmac.compare_digest(probe, s.digest) and s.expires > now:
                    found = s
        return found

    def logout(self, cookie: str | None) -> None:
        session = self.session(cookie)
        if session is not None:
            with self._lock:
                self._sessions = [s for s in self._sessions if s is not session]

    @staticmethod
    def csrf_ok(principal: Principal, given: str | None) -> bool:
        """A form's CSRF token against the session's (bearer requests carry no ambient
        credentials, so they need none)."""
        if principal.via == "bearer":
            return True
        if principal.csrf is None or not given:
            return False
        return hmac.compare_digest(_digest(given), _digest(principal.csrf))
