"""The `provider_keys.json` document: its shapes and which of its fields are secret.

Moltis's key store is a flat object of entries `{apiKey?, baseUrl?, models?,
displayName?}` (camelCase; `model` is read as a string or a list), plus the legacy
shape `{name: "key"}`. Entry names are provider ids, `custom-<slug>`, `voice-*` and
`phone_*`; the last reuse fields (Twilio: apiKey = account SID, baseUrl = auth token),
so `baseUrl` is a secret in `phone_*` entries.
"""

from __future__ import annotations

from ledger.core.keypaths import KeyPath

__all__ = ["is_key_secret_path"]


def is_key_secret_path(path: KeyPath) -> bool:
    """True if the value at this path of the keys document is a secret."""
    if len(path) != 2:
        return False
    name, field = path
    return field == "apiKey" or (field == "baseUrl" and name.startswith("phone_"))
