"""Who is making a change. Never empty: the explicit `actor=` argument, else the
context-local `acting_as(...)`, else $MOLTIS_LEDGER_ACTOR, else `<os user>@<host>`."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from contextvars import ContextVar

from ledger.core.text_rule import refuse_nul
from ledger.errors import InputError

__all__ = ["acting_as", "resolve_actor"]

_acting_as: ContextVar[str | None] = ContextVar("moltis_ledger_actor", default=None)
MAX_TEXT = 1000


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Attribute every write made in this context (thread or task) to `actor`."""
    token = _acting_as.set(_check(actor, "actor"))
    try:
        yield
    finally:
        _acting_as.reset(token)


@functools.cache
def _os_actor() -> str:
    import getpass  # with socket: only writes without an explicit actor need them
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _check(text: str, what: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{what} must be a non-empty string")
    refuse_nul(text, what)
    if len(text) > MAX_TEXT or any(ord(c) < 32 and c not in "\t" for c in text):
        raise InputError(f"{what} must be one line of at most {MAX_TEXT} characters")
    _check_utf8(text, what)
    return text


def _check_utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{what} is not valid UTF-8 text") from None


@functools.lru_cache(maxsize=64)
def _checked(text: str, what: str) -> str:
    return _check(text, what)


def resolve_actor(explicit: str | None = None) -> str:
    if explicit is not None:
        return _checked(explicit, "actor") if isinstance(explicit, str) else _check(
            explicit, "actor")
    ctx = _acting_as.get()
    if ctx:
        return ctx
    env = os.environ.get("MOLTIS_LEDGER_ACTOR", "").strip()
    if env:
        return _checked(env, "MOLTIS_LEDGER_ACTOR")
    return _os_actor()


def check_reason(reason: str | None) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str) or len(reason) > 4 * MAX_TEXT:
        raise InputError(f"reason must be a string of at most {4 * MAX_TEXT} characters")
    refuse_nul(reason, "reason")
    _check_utf8(reason, "reason")
    return reason
