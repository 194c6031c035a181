"""A mask placeholder (`<secret fp:…>`, from a masked file or export) written where a
secret is stored: the one rule for a secret leaf (`ledger.typed.changes`) and for a
secret element of a list (`ledger.typed.list_secrets`), and its one refusal.

The placeholder stands for the secret held there with that fingerprint. One that
matches none, while a live secret (one the gateway can open, not a withheld or
destroyed placeholder) is held there, is refused naming the key path and the fix: it is
a placeholder left behind after the secret changed in the ledger (or from an older
masked export), and taking it as "withheld" would silently swap the gateway's key for a
value it cannot open. Otherwise it records "a secret with this fingerprint, value
withheld" (or destroyed).
"""

from __future__ import annotations

import secrets as _random
from collections.abc import Mapping

from ledger.core.keypaths import KeyPath, format_path
from ledger.core.secret_refs import DESTROYED_REF, WITHHELD_REF, SecretRef
from ledger.errors import ConfigValidationError

__all__ = ["is_live", "placeholder_ref"]


def is_live(ref: SecretRef) -> bool:
    """Whether the gateway can open this stored secret (not a withheld or destroyed
    placeholder): only such a secret can be lost to a foreign mask."""
    return not ref.ref.startswith((WITHHELD_REF, DESTROYED_REF))


def placeholder_ref(path: KeyPath, text: str, mask: tuple[str, bool],
                    held: Mapping[str, SecretRef], *, live: bool) -> SecretRef:
    """The stored form of the placeholder `text` (parsed: `mask`) written at `path`:
    the secret of `held` (by fingerprint) it names; else, when a `live` secret is held
    there, ConfigValidationError; else a withheld (or destroyed) placeholder."""
    fp, destroyed = mask
    found = held.get(fp)
    if found is not None:
        return found
    if live:
        where = format_path(path)
        raise ConfigValidationError(
            f"{where}: {text} is a placeholder for a secret this ledger does not hold "
            "there (left in a file after the secret changed in the ledger, or from an "
            "older masked export); a placeholder never replaces a stored secret. Write "
            "the value itself, or the ledger's own placeholder (`moltis-ledger get "
            f"{where}` shows it), or leave the key out, to keep it", where)
    prefix = DESTROYED_REF if destroyed else WITHHELD_REF
    return SecretRef(ref=f"{prefix}{_random.token_hex(8)}", fp=fp)
