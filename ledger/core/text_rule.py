"""One text rule for every backend: no NUL characters in stored text.

PostgreSQL cannot store U+0000 in a text column (nor in jsonb); SQLite can. A ledger
that accepted one on SQLite could then never be copied to PostgreSQL, so NUL is refused
at input, on every backend, with the same error naming the field: reason, actor, a
value or a key of the configuration, a secret value.
"""

from __future__ import annotations

from typing import Any

from ledger.errors import InputError

__all__ = ["refuse_nul", "refuse_nul_in"]


def refuse_nul(text: str, what: str) -> None:
    if "\x00" in text:
        raise InputError(f"{what} contains a NUL character (\\x00), which the ledger does not "
                         "store (PostgreSQL cannot); remove it")


def refuse_nul_in(value: Any, what: str) -> None:
    """Every string in a value (and every key of its tables)."""
    if isinstance(value, str):
        refuse_nul(value, what)
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                refuse_nul(k, f"a key in {what}")
            refuse_nul_in(v, what)
    elif isinstance(value, list | tuple):
        for v in value:
            refuse_nul_in(v, what)
