"""HTTP plumbing of the audit view: security headers on every response (no-store unless
a static file was served), the static files, the error type handlers raise, query and
form parameters (forms are parsed here, urlencoded only, so no multipart parser is
needed)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.web import library as lib

__all__ = ["CSP", "HttpError", "SecurityHeaders", "StaticAssets", "bounded_int", "harden",
           "int_param", "read_form", "timeline_filter"]

MAX_FORM_BYTES = 64 * 1024

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


CACHEABLE_STATUSES = frozenset({200, 206, 304})  # a static file, or part of one, or unchanged
STATIC_CACHE = b"max-age=300"
ERROR_BODY = b"500 internal error: the audit view failed; the server log has the details\n"
ERROR_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"),
                 (b"content-length", str(len(ERROR_BODY)).encode())]
# Every seq and count fits in a signed 64-bit integer (SQLite, PostgreSQL bigint); a
# longer number is refused before int() (Python's int-string limit, and the time it
# takes, make a huge one a 500 or a slow request).
MAX_INT_DIGITS = 18
_REPLACED = frozenset({h for h, _ in SECURITY_HEADERS} | {b"cache-control"})


def harden(headers: list[tuple[bytes, bytes]], status: int) -> list[tuple[bytes, bytes]]:
    """A response's headers with the security headers, and `cache-control: no-store`
    unless the response itself asked to be cached and succeeded (only the static files
    do, see `StaticAssets`): what may be cached follows from the response, never from
    the path it was asked for."""
    cache = next((v for k, v in headers if k.lower() == b"cache-control"), None)
    if cache is None or status not in CACHEABLE_STATUSES:
        cache = b"no-store"
    return [(k, v) for k, v in headers if k.lower() not in _REPLACED] + [
        *SECURITY_HEADERS, (b"cache-control", cache)]


class SecurityHeaders:
    """Adds the security headers (and no-store caching) to every response, the 500 of
    an unexpected exception included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": harden(list(message.get("headers", [])),
                                                        int(message["status"]))}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Starlette's error middleware sits outside this one: answer the 500 here,
            # with the headers, then let the exception go on (the server logs it).
            if not started:
                await send_with_headers({"type": "http.response.start", "status": 500,
                                         "headers": ERROR_HEADERS})
                await send_with_headers({"type": "http.response.body", "body": ERROR_BODY})
            raise


class StaticAssets(StaticFiles):
    """The view's script, style sheet and icon. A file served may be cached for five
    minutes; an error (no such file, a wrong method) is a bare text answer: no page, so
    no operator name or CSRF token, and never cached."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            response = await super().get_response(path, scope)
        except HTTPException as err:
            return PlainTextResponse(f"{err.status_code} {err.detail}\n",
                                     status_code=err.status_code, headers=err.headers)
        if response.status_code in CACHEABLE_STATUSES:
            response.headers["cache-control"] = STATIC_CACHE.decode()
        return response


class HttpError(Exception):
    """A request the view refuses: the status and a message for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def bounded_int(text: str, lo: int = 0) -> int | None:
    """`text` as a whole number ≥ lo of at most MAX_INT_DIGITS ASCII digits, else None."""
    text = text.strip()
    if not (0 < len(text) <= MAX_INT_DIGITS and text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value >= lo else None


def int_param(params: Mapping[str, str], name: str, default: int | None = None,
              lo: int = 0) -> int | None:
    """A whole-number parameter (absent or empty: `default`); 400 if it is not one."""
    text = (params.get(name) or "").strip()
    if not text:
        return default
    value = bounded_int(text, lo)
    if value is None:
        raise HttpError(400, f"{name} must be a whole number ≥ {lo} of at most "
                             f"{MAX_INT_DIGITS} digits")
    return value


def timeline_filter(params: Mapping[str, str]) -> lib.TimelineFilter:
    def get(name: str) -> str | None:
        value = (params.get(name) or "").strip()
        return value or None

    return lib.TimelineFilter(path=get("path"), actor=get("actor"), source=get("source"),
                              since=get("since"), until=get("until"))



async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the only kind the pages send), size-limited."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HttpError(413, "the form is too large")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and kind not in ("application/x-www-form-urlencoded", ""):
        raise HttpError(415, "send the form as application/x-www-form-urlencoded")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True,
                          strict_parsing=False, max_num_fields=50)
    except (UnicodeDecodeError, ValueError) as err:
        raise HttpError(400, f"unreadable form: {err}") from None
    return {k: v[-1] for k, v in parsed.items()}

