"""HTTP plumbing of the audit view: security headers on every response, the error
type handlers raise, query and form parameters (forms are parsed here, urlencoded only,
so no multipart parser is needed)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.web import library as lib

__all__ = ["CSP", "HttpError", "SecurityHeaders", "int_param", "read_form", "timeline_filter"]

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


class SecurityHeaders:
    """Adds the security headers (and no-store caching) to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in {h for h, _ in SECURITY_HEADERS}]
                headers += SECURITY_HEADERS
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    static = "/static/" in str(scope.get("path", ""))
                    headers.append((b"cache-control",
                                    b"max-age=300" if static else b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HttpError(Exception):
    """A request the view refuses: the status and a message for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def int_param(params: Mapping[str, str], name: str, default: int | None = None,
         lo: int = 0) -> int | None:
    text = (params.get(name) or "").strip()
    if not text:
        return default
    if not text.isascii() or not text.isdigit() or int(text) < lo:
        raise HttpError(400, f"{name} must be a whole number ≥ {lo}")
    return int(text)


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

