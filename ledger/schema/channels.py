"""`[channels]`: messaging integrations, with free-form per-account configuration."""


from typing import Any, ClassVar

import msgspec

from ledger.schema.base import Section

__all__ = ["FREEFORM_SECRETS", "ChannelsConfig"]

# Channel accounts are free-form JSON in Moltis, so their tokens cannot be typed `Secret`.
# These key paths (`*` = any key) are the secrets among them: Moltis's own
# `ChannelType::secret_fields` (crates/channels/src/plugin/channel_type.rs), which the
# gateway vault-encrypts. WhatsApp (QR pairing) and Signal (signal-cli) have none.
FREEFORM_SECRETS: tuple[tuple[str, ...], ...] = (
    ("channels", "telegram", "*", "token"),
    ("channels", "msteams", "*", "app_password"),
    ("channels", "msteams", "*", "webhook_secret"),
    ("channels", "discord", "*", "token"),
    ("channels", "slack", "*", "bot_token"),
    ("channels", "slack", "*", "app_token"),
    ("channels", "slack", "*", "signing_secret"),
    ("channels", "matrix", "*", "access_token"),
    ("channels", "matrix", "*", "password"),
    ("channels", "nostr", "*", "secret_key"),
    ("channels", "telephony", "*", "auth_token"),
)


def _default_offered() -> list[str]:
    return ["telegram", "whatsapp", "msteams", "discord", "slack", "matrix", "nostr", "signal"]


class ChannelsConfig(Section):
    """`[channels]`: offered channel types and `{account_id: config}` per channel type.

    Matrix has no named field in Moltis's struct (only in `offered` and the validator), so
    `[channels.matrix.*]` lands in `entries` with every other unnamed channel type, exactly
    as it lands in Moltis's flattened `extra` map.
    """

    __flatten__: ClassVar[str] = "entries"

    # Named channel types are `HashMap<String, serde_json::Value>` in Moltis: any value
    # loads (`[channels.telegram] enabled = true` is valid), so nothing is refused here.

    # An explicit empty list offers no channel type in the web UI.
    offered: list[str] = msgspec.field(default_factory=_default_offered)
    telegram: dict[str, Any] = msgspec.field(default_factory=dict)
    whatsapp: dict[str, Any] = msgspec.field(default_factory=dict)
    msteams: dict[str, Any] = msgspec.field(default_factory=dict)
    discord: dict[str, Any] = msgspec.field(default_factory=dict)
    slack: dict[str, Any] = msgspec.field(default_factory=dict)
    nostr: dict[str, Any] = msgspec.field(default_factory=dict)
    signal: dict[str, Any] = msgspec.field(default_factory=dict)
    telephony: dict[str, Any] = msgspec.field(default_factory=dict)
    # channel type -> {account_id: account config}
    entries: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
