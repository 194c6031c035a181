"""`[config]`: where the configuration lives (the backend, the ledger's location and
id), wiring local to one installation, never configuration content.

The ledger never holds `[config]`: no import takes it in (`without_wiring`), and its
lines are no part of the import prints (`ledger.ops.migrate`). The effective config of
a store names the ledger it was read from (`ledger.typed.layers.wired`) with the table
`wiring_table` builds, the same for the ledger's own view and for its head mirror
served in its place.
"""

from __future__ import annotations

from typing import Any, Final

from ledger.core.document import Doc

__all__ = ["WIRING", "wiring_table", "without_wiring"]

# `[config]` of the config file says where the configuration lives (the backend, the
# ledger's location and id): wiring local to one installation, never configuration
# content. No import takes it into the ledger, and its lines are no part of the prints.
WIRING: Final = "config"


def without_wiring(doc: Doc) -> Doc:
    """The config document as content: `[config]` left out."""
    return {k: v for k, v in doc.items() if k != WIRING} if WIRING in doc else doc


def wiring_table(*, backend: str | None = None, location: str | None = None,
                 ledger_id: str | None = None) -> dict[str, Any]:
    """The raw `[config]` table naming a ledger: `backend` and its `location` (`dsn`
    for PostgreSQL, else `db`; both left out without `backend`), then `ledger_id` when
    there is one (an empty id is none)."""
    table: dict[str, Any] = {}
    if backend is not None:
        table["backend"] = backend
        table["dsn" if backend == "postgres" else "db"] = location
    if ledger_id:
        table["ledger_id"] = ledger_id
    return table
