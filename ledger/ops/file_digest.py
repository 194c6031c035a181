"""The cheap half of the hand-edit check: is the config file, byte for byte, the one the
ledger last took in?

Before every command (and whenever the gateway opens the ledger) a hand edit of the
config file is imported as a `file` event. The full check (`ledger.ops.migrate`) parses
the schema and fingerprints every leaf of the file, which costs more than the rest of
`moltis-ledger get`. So every import (first migrate, incremental migrate, a hand edit,
the gateway's first start, a backend switch) records, in the same transaction as the
import prints (`META_CONFIG`), a digest of the exact bytes it parsed; a file whose bytes
give that digest is in step, and nothing heavy is loaded.

The digest is a cache kept in a database that is input like any other, so it may only
ever send a caller to the full check, never let it skip a real edit:

- It is keyed (blake3 under a subkey of the ledger key, which never enters the
  database). A plain hash could be written by anyone who can write the database but
  cannot read the key; they would make an edited file look imported, and the tool would
  ignore that hand edit for as long as the file stays so.
- It is bound to the import prints stored beside it, to the ledger id, the file's name
  (its format) and the rules version below: prints written without a matching digest
  (an older version, a restore, tampering) make the digest not count, so the fast path
  never decides against prints the full check would have read.
- Anything that does not check (no digest, a malformed one, no key, another key, other
  bytes) means "not known to be in step": the caller runs the full check, which is
  exactly what ran before this cache existed, and which records a fresh digest.

What the digest does not protect: the import prints themselves are not keyed (only
their secret leaves are), so someone who can write the database can still rewrite them
and the full check then trusts them; that was so before the digest and is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Final

from blake3 import blake3

from ledger import __version__
from ledger.core import constant_time
from ledger.errors import SecretKeyError

if TYPE_CHECKING:
    from ledger.engine.ledger import Ledger

__all__ = ["META_CONFIG", "META_FILE_DIGEST", "can_record", "damaged_record", "damaged_text",
           "digest_for", "in_step", "read_record", "stored_prints"]

META_CONFIG: Final = "import.config.leaves"  # the import prints (ledger.ops.migrate)
META_FILE_DIGEST: Final = "import.config.digest"
# Bump when what a file's bytes import as changes (the leaf prints, the secret policy,
# which sections are wiring): digests recorded under the old rules then stop counting.
RULES: Final = "v1"


def read_record(ledger: Ledger, key: str = META_CONFIG) -> tuple[dict[str, str] | None, bool]:
    """The import prints stored under `key` (META_CONFIG, or the key file's), and whether
    the row is there but is not prints (damaged). The row is input like any other read
    back (review r25: `{not json` or `5` there crashed every command, `restore` and
    `verify` included): a damaged one is read as no record, so no hand edit is taken
    from it (`damaged_text` says so), and `migrate` records the file again."""
    text = ledger.backend.get_meta(key)
    if text is None:
        return None, False
    try:
        prints = json.loads(text)
    except ValueError:
        return None, True
    if not isinstance(prints, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in prints.items()):
        return None, True
    return prints, False


def stored_prints(ledger: Ledger, key: str = META_CONFIG) -> dict[str, str] | None:
    """`read_record`'s prints: None when never imported or damaged."""
    return read_record(ledger, key)[0]


def damaged_text(key: str, file: str) -> str:
    """What every hand-edit check and `check` say of a damaged import record."""
    return (f"the ledger's record of {file} as last imported (meta row {key}) is damaged, "
            "so hand edits of that file are not imported: set in the ledger what the file "
            "changed (`moltis-ledger export` shows the ledger's side), then `moltis-ledger "
            "migrate` records the file as it is, importing nothing of it")


def damaged_record(ledger: Ledger, key: str, file: str) -> str | None:
    """`damaged_text` when the record under `key` is damaged, else None."""
    return damaged_text(key, file) if read_record(ledger, key)[1] else None


def _key(ledger: Ledger) -> bytes | None:
    """A subkey of the ledger key for this purpose only (derived as the vault derives
    its subkeys, with a context of its own), so the digest reveals no other key."""
    try:
        key = ledger.vault.keys.load(create=False)
    except SecretKeyError:
        return None
    if key is None:
        return None
    return blake3(key, derive_key_context="moltis-config-ledger 2026 config file digest").digest()


def _mac(key: bytes, ledger_id: str, name: str, data: bytes, prints: str) -> str:
    h = blake3(key=key)
    for part in (RULES.encode(), __version__.encode(), ledger_id.encode(), name.encode(),
                 prints.encode("utf-8"), blake3(data).digest()):
        h.update(len(part).to_bytes(8, "big"))  # length-prefixed: no part can shift into another
        h.update(part)
    return f"{RULES}:{h.hexdigest()}"


def can_record(ledger: Ledger) -> bool:
    """Whether a digest can be recorded here (the ledger key is at hand)."""
    return _key(ledger) is not None


def digest_for(ledger: Ledger, config_file: Path, data: bytes | None, prints: str
               ) -> str:
    """The digest to store with `prints` for a file that was read as `data`; "" (which
    never checks) without the bytes or without the ledger key."""
    key = _key(ledger) if data is not None else None
    if key is None or data is None:
        return ""
    ledger_id = ledger.backend.get_meta("ledger_id") or ""
    return _mac(key, ledger_id, config_file.name, data, prints)


def in_step(ledger: Ledger, config_file: Path, data: bytes | None) -> bool:
    """True only when the stored digest proves that `data` (the config file's bytes, as
    read once for this command) is what the ledger last imported; False means "run the
    full check"."""
    if data is None:
        return False
    backend = ledger.backend
    stored = backend.get_meta(META_FILE_DIGEST)
    prints = backend.get_meta(META_CONFIG)
    if not stored or prints is None:
        return False
    key = _key(ledger)
    if key is None:
        return False
    expected = _mac(key, backend.get_meta("ledger_id") or "", config_file.name, data, prints)
    return constant_time.equal(stored, expected)
