"""A wrong-typed value set through a typed edit (`update_raw`) is the library's
validation error naming the key path, the expected type and the fix, never a bare
Python error, and never echoing the value (it may be a secret)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger import ConfigValidationError, SqliteConfigStore
from ledger.schema import MoltisConfig

PASTED = "sk-PASTED-INTO-THE-WRONG-PLACE-91c4e2"

def _update(tmp_path: Path, fn: Callable[[MoltisConfig], Any]) -> None:
    async def go() -> None:
        store = SqliteConfigStore(tmp_path / "l.db")
        try:
            await store.update_raw(fn)
        finally:
            await store.close()

    asyncio.run(go())

@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOLTIS_LEDGER_KEY", secrets.token_hex(32))

def test_update_raw_with_a_non_string_secret_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigValidationError,
                       match=r"instrumentation\.langfuse\.secret_key") as err:
        _update(tmp_path, lambda c: setattr(c.instrumentation.langfuse, "secret_key", 12345))
    text = str(err.value)
    assert "str" in text and "12345" not in text

def _set_port(value: Any) -> Callable[[MoltisConfig], None]:
    return lambda c: setattr(c.server, "port", value)

def _set_bind(value: Any) -> Callable[[MoltisConfig], None]:
    return lambda c: setattr(c.server, "bind", value)

def _set_section(value: Any) -> Callable[[MoltisConfig], None]:
    return lambda c: setattr(c, "server", value)

class _Opaque:
    def __repr__(self) -> str:
        return PASTED

@pytest.mark.parametrize(("fn", "path"), [
    (_set_bind(8080), r"server\.bind"),                  # an int for a str
    (_set_port(PASTED), r"server\.port"),                # a str (a secret!) for an int
    (_set_section([PASTED]), r"server"),                 # a list for a table
    (_set_bind(_Opaque()), r"server\.bind"),             # something JSON cannot hold
    (lambda c: setattr(c.instrumentation.langfuse, "secret_key", [PASTED]),
     r"instrumentation\.langfuse\.secret_key"),
    (lambda c: setattr(c.instrumentation.langfuse, "secret_key", {"$secret": PASTED}),
     r"instrumentation\.langfuse\.secret_key"),          # a forged stored reference
])
def test_a_wrong_typed_value_is_a_validation_error_that_withholds_it(
        tmp_path: Path, fn: Callable[[MoltisConfig], Any], path: str) -> None:
    with pytest.raises(ConfigValidationError, match=path) as err:
        _update(tmp_path, fn)
    text = str(err.value)
    assert PASTED not in text and PASTED not in repr(err.value.args)
    assert "expected" in text.lower() or "expect" in text.lower(), text

def test_a_non_string_in_a_secret_map_is_a_clear_error(tmp_path: Path) -> None:
    """`[env]` holds secrets: a number (or a list of secrets) in it is refused by name."""
    with pytest.raises(ConfigValidationError, match=r"env\.") as err:
        _update(tmp_path, lambda c: c.env.__setitem__("OPENAI_API_KEY", 12345))
    assert "12345" not in str(err.value)
    with pytest.raises(ConfigValidationError, match=r"env\.") as err:
        _update(tmp_path, lambda c: c.env.__setitem__("OPENAI_API_KEY", [PASTED]))
    assert PASTED not in str(err.value)


def test_the_file_store_refuses_the_same_values_by_name(tmp_path: Path) -> None:
    from ledger import FileConfigStore

    async def go(fn: Callable[[MoltisConfig], Any]) -> None:
        await FileConfigStore(tmp_path / "moltis.toml").update_raw(fn)

    for fn, path in [
        (lambda c: setattr(c.instrumentation.langfuse, "secret_key", 12345),
         r"instrumentation\.langfuse\.secret_key"),
        (_set_bind(_Opaque()), r"server\.bind"),
        (_set_port(PASTED), r"server\.port"),
    ]:
        with pytest.raises(ConfigValidationError, match=path) as err:
            asyncio.run(go(fn))
        assert PASTED not in str(err.value) and "12345" not in str(err.value)
