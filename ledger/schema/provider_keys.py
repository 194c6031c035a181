"""The `provider_keys.json` document: its shapes and which of its fields are secret.

Moltis's key store is a flat object of entries `{apiKey?, baseUrl?, models?,
displayName?}` (camelCase; `model` is read as a string or a list), plus the legacy
shape `{name: "key"}`. Entry names are provider ids, `custom-<slug>`, `voice-*` and
`phone_*`; the last reuse fields (Twilio: apiKey = account SID, baseUrl = auth token),
so `baseUrl` is a secret in `phone_*` entries.
"""

from __future__ import annotations

from ledger.core.keypaths import KeyPath
from ledger.schema.providers import is_provider_name

__all__ = ["KEY_FIELDS", "is_key_entry_name", "is_key_secret_path", "is_known_key_path"]

# The fields of one entry, as Moltis writes them (`model` is read as `models`).
KEY_FIELDS = ("apiKey", "baseUrl", "models", "displayName")


def is_key_secret_path(path: KeyPath) -> bool:
    """True if the value at this path of the keys document is a secret."""
    if len(path) != 2:
        return False
    name, field = path
    return field == "apiKey" or (field == "baseUrl" and name.startswith("phone_"))


def is_key_entry_name(name: str) -> bool:
    """A name Moltis's key store uses: a provider (known or `custom-<slug>`), a voice
    provider's key (`voice-*`) or a phone provider's (`phone_*`)."""
    return is_provider_name(name) or name.startswith(("voice-", "phone_"))


def is_known_key_path(path: KeyPath) -> bool:
    """An entry, or one of its fields (any entry name: unknown names are warned about
    separately, as Moltis keeps whatever its key store holds)."""
    return len(path) == 1 or (len(path) == 2 and path[1] in KEY_FIELDS)
