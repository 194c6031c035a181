"""`MirrorConfigStore`: the ledger's head as last mirrored to a file, served read-only.

When the ledger cannot be opened at all (not even read-only), the gateway falls back to
the newest state it can prove: the mirror `ledger.ops.mirror` writes after every
commit, which holds both documents with secrets as the ledger's references plus their
sealed values (still encrypted with the ledger key, never placeholders). Every write
raises ReadOnlyError saying why.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ledger.core.document import Doc
from ledger.core.secret_refs import SecretOpener
from ledger.engine.ledger import Commit
from ledger.errors import ReadOnlyError
from ledger.schema import MoltisConfig
from ledger.stores.contract import ConfigStore
from ledger.typed.convert import RawChange, to_typed
from ledger.typed.layers import (
    NO_FLAGS,
    Effective,
    Flags,
    Provenance,
    effective_config,
    provenance_map,
    wired,
)

__all__ = ["MirrorConfigStore"]


class MirrorConfigStore(ConfigStore):
    """A read-only store over a mirrored head (config document, seq, where from)."""

    backend_name = "mirror"

    def __init__(self, config: Doc, *, seq: int, where: str, opener: SecretOpener,
                 reason: str, wiring: dict[str, Any] | None = None) -> None:
        self._doc = config
        # the `[config]` of the ledger this mirrors (`ledger.typed.layers.wired`)
        self.wiring = wiring
        self.seq = seq
        self.where = where
        self._opener = opener
        self.read_only = True
        self.read_only_reason = reason

    async def load_raw(self) -> MoltisConfig:
        return to_typed(self._doc, self._opener, where=self.where)

    async def raw_document(self) -> Doc:
        return copy.deepcopy(self._doc)

    async def load_effective(self, *, flags: Flags = NO_FLAGS,
                             env: Mapping[str, str] | None = None) -> MoltisConfig:
        return self._effective(flags, env).config

    async def source_metadata(self, *, flags: Flags = NO_FLAGS,
                              env: Mapping[str, str] | None = None) -> dict[str, Provenance]:
        eff = self._effective(flags, env)
        origin = Provenance("ledger", f"seq {self.seq} (from {self.where})", seq=self.seq)
        return provenance_map(eff, self._doc, lambda _path: origin)

    def _effective(self, flags: Flags, env: Mapping[str, str] | None) -> Effective:
        return wired(effective_config(self._doc, env=env, flags=flags, opener=self._opener,
                                      where=self.where), self.wiring)

    async def head_seq(self) -> int:
        return self.seq

    def _refuse(self) -> ReadOnlyError:
        return ReadOnlyError(f"{self.where}: {self.read_only_reason}; nothing was written")

    async def save_raw(self, cfg: MoltisConfig | Mapping[str, Any], **kw: Any) -> Commit:
        raise self._refuse()

    async def update_raw(self, fn: Callable[[MoltisConfig], Any], **kw: Any) -> Commit:
        raise self._refuse()

    async def apply_changes(self, raw_changes: Sequence[RawChange], **kw: Any) -> Commit:
        raise self._refuse()
