"""`FileProviderStore`: Moltis's `provider_keys.json`, made safe.

Both shapes are read (camelCase entries, `model` as a string or a list, and the
legacy `{name: "key"}`); writes keep every entry (`custom-*`, `voice-*`, `phone_*`
and fields this version does not know), run under a cross-process lock, and replace
the file atomically with mode 0600. Keys are plaintext in this file, as in Moltis;
the ledger is where they are encrypted at rest.
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from blake3 import blake3

from ledger._log import get_logger
from ledger.core.actor import check_reason, resolve_actor
from ledger.core.document import (
    MISSING,
    Doc,
    apply_changes,
    diff_documents,
    get_value,
    normalize_document,
)
from ledger.core.events import Change
from ledger.core.secret_refs import Secret, SecretRef, parse_mask
from ledger.engine.ledger import Commit
from ledger.errors import (
    ConfigValidationError,
    ConflictError,
    InputError,
    ReadOnlyError,
)
from ledger.files.safe_io import (
    MAX_FILE_BYTES,
    locked,
    read_file,
    replace_file,
)
from ledger.schema.provider_keys import is_key_secret_path
from ledger.stores.contract import UNSET, ProviderStore, check_name, entry_changes, run_write
from ledger.stores.key_file import parse_keys, read_keys_file
from ledger.typed.convert import RawChange
from ledger.typed.layers import NO_FLAGS, Flags
from projections.provider_view import (
    EffectiveProvider,
    ProviderKey,
    effective_providers,
    keys_view,
    normalize_keys_document,
)

__all__ = ["FileProviderStore", "read_keys_file"]

_log = get_logger("ledger.stores.file_providers")


def _token(data: bytes) -> int:
    return int.from_bytes(blake3(data).digest()[:7], "big") if data else 0


def _plain(value: Any, path: tuple[str, ...], where: str) -> Any:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, SecretRef) or (isinstance(value, str) and parse_mask(value)):
        raise ConfigValidationError(
            f"{where}: {'.'.join(path)}: a masked secret cannot be written to a key file",
            ".".join(path))
    return value


class FileProviderStore(ProviderStore):
    """Provider credentials in `provider_keys.json`."""

    backend_name = "file"

    def __init__(self, path: str | os.PathLike[str], *, config_store: Any = None,
                 read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._config = config_store  # a ConfigStore for `enable` and the effective view

    def _read(self) -> tuple[bytes, Doc]:
        data = read_file(self.path)  # a regular file only, size-checked
        if data is None:
            return b"", {}
        return data, parse_keys(data, str(self.path))

    async def list(self) -> dict[str, ProviderKey]:
        return keys_view(self._read()[1])

    async def head_seq(self) -> int:
        return _token(self._read()[0])

    async def effective(self, *, env: Mapping[str, str] | None = None,
                        flags: Flags = NO_FLAGS) -> dict[str, EffectiveProvider]:
        env = os.environ if env is None else env
        providers: Mapping[str, Any] = {}
        if self._config is not None:
            providers = (await self._config.load_effective(env=env, flags=flags)).providers.entries
        return effective_providers(providers, await self.list(), env)

    def _write(self, edit: Any, *, actor: str | None, reason: str | None, source: str,
               expected_seq: int | None, wait: bool) -> Commit:
        if self.read_only:
            raise ReadOnlyError(f"{self.path}: the key store was opened read-only")
        actor = resolve_actor(actor)
        check_reason(reason)
        with locked(self.path, wait=wait):
            data, doc = self._read()
            if expected_seq is not None and expected_seq != _token(data):
                raise ConflictError(expected_seq, _token(data))
            new_doc = edit(doc)
            changes = diff_documents(doc, new_doc, doc="keys")
            if not changes:
                return Commit(_token(data), False, blake3(data).digest())
            text = json.dumps(new_doc, indent=2, ensure_ascii=False) + "\n"
            out = text.encode("utf-8")
            if len(out) > MAX_FILE_BYTES:  # it could not be read back
                raise InputError(f"{self.path}: the new file would be {len(out):,} bytes, over "
                                 f"the limit of {MAX_FILE_BYTES:,}; nothing was written")
            replace_file(self.path, out)
        _log.info("provider keys written", path=str(self.path), actor=actor, source=source,
                  entries=sorted({c.path[0] for c in changes}))
        return Commit(_token(out), True, blake3(out).digest(), tuple(_redacted(changes)))

    async def set(self, name: str, *, api_key: str | Secret | None = UNSET,
                  base_url: str | Secret | None = UNSET, models: builtins.list[str] | None = UNSET,
                  display_name: str | None = UNSET, enable: bool = True,
                  actor: str | None = None, reason: str | None = None, source: str = "api",
                  expected_seq: int | None = None) -> Commit:
        raw = entry_changes(check_name(name), {"api_key": api_key, "base_url": base_url,
                                               "models": models, "display_name": display_name})

        def edit(doc: Doc) -> Doc:
            changes = [
                Change(op=rc.op, path=rc.path, value=_plain(rc.value, rc.path, str(self.path)),
                       doc="keys") if rc.op == "set" else Change(op="unset", path=rc.path)
                for rc in raw
            ]
            if get_value(doc, (name,)) is MISSING:
                changes.insert(0, Change(op="set", path=(name,), value={}))
            new, _ = apply_changes(doc, changes)
            return new

        commit = await run_write(lambda wait: self._write(
            edit, actor=actor, reason=reason, source=source, expected_seq=expected_seq,
            wait=wait))
        if commit.appended and enable and self._config is not None:
            # Moltis marks the provider enabled in moltis.toml too; two files cannot be
            # written atomically together, so this is a second, separate write.
            from ledger.schema.providers import ProviderConfig, is_provider_name

            if is_provider_name(name):
                def enable_fn(cfg: Any) -> None:
                    entry = cfg.providers.get(name) or ProviderConfig()
                    entry.enabled = True
                    cfg.providers[name] = entry

                await self._config.update_raw(enable_fn, actor=actor, reason=reason,
                                              source=source)
        return commit

    async def remove(self, name: str, *, actor: str | None = None, reason: str | None = None,
                     source: str = "api", expected_seq: int | None = None) -> Commit:
        def edit(doc: Doc) -> Doc:
            return {k: v for k, v in doc.items() if k != name}

        return await run_write(lambda wait: self._write(
            edit, actor=actor, reason=reason, source=source, expected_seq=expected_seq,
            wait=wait))

    async def import_keys(self, data: Mapping[str, Any], *, actor: str | None = None,
                          reason: str | None = None, source: str = "import") -> Commit:
        doc = normalize_document(normalize_keys_document(data, "provider keys"),
                                 "provider keys")

        def edit(_old: Doc) -> Doc:
            return {k: {f: _plain(v, (k, f), str(self.path)) for f, v in e.items()}
                    if isinstance(e, dict) else e for k, e in doc.items()}

        return await run_write(lambda wait: self._write(
            edit, actor=actor, reason=reason, source=source, expected_seq=None, wait=wait))


def _redacted(changes: list[Change]) -> list[Change]:
    return [Change(op=c.op, path=c.path, value="<secret>" if c.op == "set" and
                   is_key_secret_path(c.path) else c.value, doc="keys") for c in changes]


_ = RawChange  # re-exported for callers building entry changes
