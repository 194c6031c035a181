"""Who may use the audit view: one-time login tokens, sessions, bearer tokens, CSRF.

- A login token (printed by `moltis-ledger serve`) works once, and only within
  `login_seconds` (15 minutes by default) of being issued: posted to the login form, it
  becomes a session, named by a random cookie (HttpOnly, SameSite=Strict).
- A session ends `session_seconds` after the login (12 hours), or sooner when no
  request used it for `idle_seconds` (1 hour).
- A bearer token (`Authorization: Bearer ...`) serves scripts; it may also be typed
  into the login form, any number of times.
- Every session has its own CSRF token, required on every POST of a form.

Time comes from `clock` (monotonic seconds; a test passes its own). Tokens are compared
in constant time against every known token (no early exit, no lookup keyed by the
secret itself); sessions are kept by the hash of their id, so neither a cookie nor a
token is ever a dictionary key or a log field.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Auth", "Principal", "Session"]

SESSION_COOKIE = "moltis_ledger_session"
TOKEN_BYTES = 32
SESSION_SECONDS = 12 * 3600
LOGIN_SECONDS = 15 * 60
IDLE_SECONDS = 3600
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
    expires: float  # the clock's time it ends, however busy
    digest: bytes = field(repr=False, default=b"")
    last_seen: float = 0.0  # the clock's time of its latest request


@dataclass(frozen=True)
class _LoginToken:
    digest: bytes = field(repr=False)
    operator: str
    expires: float


class Auth:
    """The tokens and sessions of one web app (in memory: a restart logs everyone out)."""

    def __init__(self, *, session_seconds: float = SESSION_SECONDS,
                 login_seconds: float = LOGIN_SECONDS, idle_seconds: float = IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.session_seconds = session_seconds
        self.login_seconds = login_seconds
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._login: list[_LoginToken] = []  # one-time, until they expire
        self._bearer: list[tuple[bytes, str]] = []
        self._sessions: list[Session] = []

    # -- tokens ----------------------------------------------------------------------

    def issue_login_token(self, operator: str) -> str:
        """A token that logs `operator` in once, within `login_seconds` (printed by
        `serve`)."""
        token = new_token()
        now = self.clock()
        with self._lock:
            self._login = [t for t in self._login if t.expires > now]
            self._login.append(_LoginToken(_digest(token), operator, now + self.login_seconds))
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
        now = self.clock()
        with self._lock:
            self._login = [t for t in self._login if t.expires > now]
            operator = None
            for i, known in enumerate(self._login):
                if hmac.compare_digest(probe, known.digest):
                    operator = known.operator
                    del self._login[i]
                    break
            if operator is None:
                operator = _find(token, self._bearer)
            if operator is None:
                return None
            cookie = new_token()
            session = Session(operator, new_token(), now + self.session_seconds,
                              _digest(cookie), last_seen=now)
            self._sessions = [s for s in self._sessions if self._alive(s, now)]
            if len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(0)
            self._sessions.append(session)
        return cookie, session

    # -- sessions --------------------------------------------------------------------

    def _alive(self, session: Session, now: float) -> bool:
        return now < session.expires and now < session.last_seen + self.idle_seconds

    def session(self, cookie: str | None) -> Session | None:
        """The live session the cookie names (this request counts as its use), or None;
        an expired or idle one is forgotten."""
        if not cookie:
            return None
        probe = _digest(cookie)
        now = self.clock()
        found = None
        with self._lock:
            for s in self._sessions:
                if hmac.compare_digest(probe, s.digest):
                    found = s
            if found is not None and not self._alive(found, now):
                self._sessions = [s for s in self._sessions if s is not found]
                found = None
            if found is not None:
                found.last_seen = now
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
