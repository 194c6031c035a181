"""The prints of a file as imported: what `migrate` records of each leaf it took in
(`import.config.leaves`, `import.keys.leaves`), compares a file with next time, and what
`retire` compares a key file with before removing it. A secret's print is the ledger's
keyed fingerprint, so nothing stored here can be tested against a guessed secret
without the key; every other value's is a plain hash of its JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from blake3 import blake3

from ledger.core.document import Doc, leaves, same_value
from ledger.core.keypaths import stored_path
from ledger.core.secret_refs import SecretRef
from ledger.core.wiring import WIRING
from ledger.engine.ledger import Ledger
from ledger.errors import LedgerError, SecretKeyError
from ledger.schema.provider_keys import is_key_secret_path
from ledger.typed.list_secrets import holds_secret

__all__ = ["content_prints", "holds_value", "keys_file_doc", "keys_held", "keys_prints",
           "leaf_prints"]


class _Fingerprints(Protocol):
    def fingerprint(self, plaintext: str) -> str: ...


def leaf_prints(doc: Doc, sealer: _Fingerprints | None, secret: Any) -> dict[str, str]:
    """path -> fingerprint of the value; secrets use the ledger's keyed fingerprint, so
    nothing stored here can be tested against a guessed secret without the key."""
    out: dict[str, str] = {}
    for path, value in leaves(doc):
        if secret(path) and isinstance(value, str) and sealer is not None:
            out[stored_path(path)] = "k:" + sealer.fingerprint(value)
        elif sealer is not None and holds_secret(path, value):
            # a list with a secret inside, a URL with a password: keyed as well
            text = json.dumps(value, sort_keys=True, ensure_ascii=False)
            out[stored_path(path)] = "k:" + sealer.fingerprint(text)
        else:
            out[stored_path(path)] = _plain_print(value)
    return out


def _plain_print(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, ensure_ascii=False).encode()
    return "b:" + blake3(data).hexdigest()[:32]


def content_prints(prints: Mapping[str, str]) -> dict[str, str]:
    """Import prints without `[config]`'s (which an older version recorded)."""
    return {k: v for k, v in prints.items()
            if not (k == WIRING or k.startswith(WIRING + "."))}


def keys_file_doc(path: Path | None) -> Doc | None:
    if path is None or not path.exists():
        return None
    # lazy: loaded only on this path (CLI start-up)
    from ledger.stores.key_file import read_keys_file

    return read_keys_file(path)


def keys_held(ledger: Ledger) -> dict[str, str]:
    """The prints a key file holding exactly the provider keys the ledger holds now
    would have: each sealed value opened and printed as a file's plaintext is (a URL
    with a password or a list with a secret inside too: review r29), so what a key
    file is compared with before it is retired is what the ledger holds, not its
    record of the file (review r28: a replaced damaged record retired a key the ledger
    lacked). A value that does not open (shredded, no key) has no print: held by no
    file, so a file holding it is kept (review r29)."""
    out: dict[str, str] = {}
    for path, value in leaves(ledger.head_state().keys):
        try:
            plain = _opened(ledger, value)
        except LedgerError:
            continue
        for key in reversed(path):
            plain = {key: plain}
        out.update(leaf_prints(plain, ledger.vault, is_key_secret_path))
    return out


def _opened(ledger: Ledger, value: Any) -> Any:
    """`value` with every sealed secret in it opened (LedgerError when one does not)."""
    if isinstance(value, SecretRef):
        return ledger.vault.open_secret(value)
    if isinstance(value, list):
        return [_opened(ledger, item) for item in value]
    if isinstance(value, dict):
        return {k: _opened(ledger, item) for k, item in value.items()}
    return value


def keys_prints(ledger: Ledger, keys_file: Path) -> dict[str, str]:
    """The import prints of a key file (what META_KEYS holds after importing it)."""
    return leaf_prints(keys_file_doc(keys_file) or {}, ledger.vault, is_key_secret_path)


def holds_value(ledger: Ledger, stored: Any, value: Any) -> bool:
    """Whether the ledger's `stored` value is the file's `value`: a sealed secret by its
    keyed fingerprint (review r28: a key file holding the ledger's own key was refused
    as a conflict, for good, since setting the same value again appends nothing)."""
    if isinstance(stored, SecretRef):
        try:
            return isinstance(value, str) and stored.fp == ledger.vault.fingerprint(value)
        except SecretKeyError:
            return False
    return same_value(stored, value)
