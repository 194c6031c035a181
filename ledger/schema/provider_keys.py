"""The `provider_keys.json` document: its shapes and which of its fields are secret.

Moltis's key store is a flat object of entries `{apiKey?, baseUrl?, models?,
displayName?}` (camelCase; `model` is read as a string or a list), plus the legacy
shape `{name: "key"}`. Entry names are provider ids, `custom-<slug>`, `voice-*` and
`phone_*`; the last reuse fields (Twilio: apiKey = account SID, baseUrl = auth token),
so `baseUrl` is a secret in `phone_*` entries.
"""

from __future__ import annotations

import functools
from typing import Final

from ledger.core.keypaths import KeyPath
from ledger.schema.providers import is_provider_name
from ledger.schema.secret_policy import secret_by_name

__all__ = ["KEY_FIELDS", "KNOWN_FIELDS", "is_key_entry_name", "is_key_secret_path",
           "is_known_key_path", "is_untyped_key_path"]

# The fields of one entry, as Moltis writes them (`model` is read as `models`).
KEY_FIELDS = ("apiKey", "baseUrl", "models", "displayName")
KNOWN_FIELDS: Final = frozenset(KEY_FIELDS)


def is_untyped_key_path(path: KeyPath) -> bool:
    """A field of an entry that this version does not know (kept as it is)."""
    return len(path) >= 2 and (len(path) > 2 or path[1] not in KNOWN_FIELDS)


@functools.lru_cache(maxsize=4096)
def is_key_secret_path(path: KeyPath) -> bool:
    """True if the value at this path of the keys document is a secret: `apiKey`,
    `baseUrl` of `phone_*` entries, and secret-shaped names among unknown fields
    (`ledger.schema.secret_policy`)."""
    if len(path) == 2:
        name, field = path
        if field == "apiKey" or (field == "baseUrl" and name.startswith("phone_")):
            return True
    return is_untyped_key_path(path) and secret_by_name(path)


def is_key_entry_name(name: str) -> bool:
    """A name Moltis's key store uses: a provider (known or `custom-<slug>`), a voice
    provider's key (`voice-*`) or a phone provider's (`phone_*`)."""
    return is_provider_name(name) or name.startswith(("voice-", "phone_"))


def is_known_key_path(path: KeyPath) -> bool:
    """An entry, or one of its fields (any entry name: unknown names are warned about
    separately, as Moltis keeps whatever its key store holds)."""
    return len(path) == 1 or (len(path) == 2 and path[1] in KEY_FIELDS)
