"""Gateway command-line flags, the top layer of the effective config (`ledger.typed.layers`
applies them). Kept apart so the store contracts can name `NO_FLAGS` as a default
without importing the schema."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

import msgspec

from ledger.core.keypaths import KeyPath, format_path

__all__ = ["NO_FLAGS", "Flags"]


# a Struct, not a dataclass: `get` starts without dataclasses and inspect (issue 16)
class Flags(msgspec.Struct, frozen=True):
    """Gateway command-line flags; they win over every other layer."""

    bind: str | None = None
    port: int | None = None
    no_tls: bool = False
    tailscale: str | None = None
    extra: Mapping[KeyPath, Any] = msgspec.field(default_factory=dict)

    def overrides(self) -> Iterator[tuple[KeyPath, Any, str]]:
        if self.bind is not None:
            yield ("server", "bind"), self.bind, "--bind"
        if self.port is not None:
            yield ("server", "port"), self.port, "--port"
        if self.no_tls:
            yield ("tls", "enabled"), False, "--no-tls"
        if self.tailscale is not None:
            yield ("tailscale", "mode"), self.tailscale, "--tailscale"
        for path, value in self.extra.items():
            yield path, value, f"--{format_path(path)}"

    def key(self) -> tuple[Any, ...]:
        return (self.bind, self.port, self.no_tls, self.tailscale,
                tuple(sorted((p, repr(v)) for p, v in self.extra.items())))


NO_FLAGS: Final = Flags()
