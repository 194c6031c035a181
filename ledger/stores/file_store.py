"""`FileConfigStore`: Moltis's own `moltis.toml` (or `moltis.yaml`/`.yml`, `moltis.json`,
found in Moltis's order) as a `ConfigStore`, written back in the file's own format,
with what Moltis lacks: a cross-process lock, atomic fsynced writes, comments and
unknown keys kept, mode 0600, and only the changed lines touched.

A file has no history: `actor` and `reason` are logged, not stored, and `head_seq()` is
a version token (a fingerprint of the file's bytes) for `expected_seq`. Secrets are
plaintext in the file, as in Moltis. A write:

1. takes `flock(LOCK_EX)` on `<name>.lock` next to the file (first without waiting; when
   another writer holds it, `run_write` waits in a worker thread, so an event loop never
   blocks);
2. re-reads the file, computes the path-level changes, validates the new document;
3. edits the TOML text in place (`ledger.stores.toml_edit`; YAML with ruamel's round trip,
   `ledger.stores.yaml_edit`; JSON is rewritten), re-parses the result and checks it is
   exactly the new document;
4. writes a temporary file in the same directory (0600), fsyncs it, renames it over the
   file and fsyncs the directory (`ledger.files.safe_io`). Nothing changed: nothing is written.

A file its owner made read-only is not replaced behind their back (ReadOnlyError), and
root editing a user's config leaves it owned by that user.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import functools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import tomlkit
from blake3 import blake3
from tomlkit import TOMLDocument

from ledger._log import get_logger
from ledger.core.actor import check_reason, resolve_actor
from ledger.core.document import (
    MISSING,
    Doc,
    apply_changes,
    diff_documents,
    get_value,
    leaves,
    normalize_document,
    normalize_value,
    same_value,
)
from ledger.core.events import Change
from ledger.core.keypaths import KeyPath, format_path
from ledger.core.secret_refs import Secret, SecretRef, parse_mask
from ledger.engine.ledger import Commit
from ledger.errors import (
    ConfigValidationError,
    ConflictError,
    InputError,
    ParseError,
    ReadOnlyError,
    StoreError,
)
from ledger.files.dirs import discover_config_file
from ledger.files.documents import config_format
from ledger.files.safe_io import (
    MAX_FILE_BYTES,
    locked,
    os_error,
    read_regular_stat,
    replace_file,
)
from ledger.schema import MoltisConfig
from ledger.stores.config_file import parse_config, read_config_file
from ledger.stores.contract import ConfigStore, run_write
from ledger.stores.toml_edit import edit_document, pruned_tables
from ledger.typed.changes import replace_tables
from ledger.typed.convert import RawChange, to_typed, typed_changes
from ledger.typed.head_cache import TypedCodec
from ledger.typed.layers import (
    NO_FLAGS,
    Effective,
    Flags,
    Provenance,
    effective_config,
    environment_key,
    provenance_map,
    referenced_variables,
    wired,
)

__all__ = ["FileConfigStore", "discover_config_file", "read_config_file"]

_log = get_logger("ledger.stores.file_store")
# A file whose mtime is this recent may change again within the same timestamp tick,
# so its cached parse is confirmed by content (git's "racily clean" rule).
_RACY_NS: Final = 2_000_000_000


@dataclass(eq=False)
class _Snapshot:
    """One parsed version of the file (the cache entry)."""

    key: tuple[int, ...] | None  # (st_dev, st_ino, st_size, st_mtime_ns); None = missing
    data: bytes
    digest: bytes
    doc: Doc
    typed: MoltisConfig | None = None
    typed_bytes: bytes = b""
    variables: frozenset[str] | None = None

    @property
    def seq(self) -> int:
        return int.from_bytes(self.digest[:7], "big") if self.key is not None else 0


@functools.cache
def _codec() -> TypedCodec:
    """Secrets in a file are plaintext: the codec without a vault reads and writes them
    so. Built on first use: its decoders cost ~20 ms, which a CLI command that only
    discovers the config file should not pay."""
    return TypedCodec(None)


class FileConfigStore(ConfigStore):
    """A `moltis.toml` / `moltis.json` file as a `ConfigStore` (no history)."""

    backend_name = "file"

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 config_dir: str | os.PathLike[str] | None = None,
                 env: Mapping[str, str] | None = None, read_only: bool = False,
                 lenient: bool = False) -> None:
        found = Path(path).expanduser() if path is not None else discover_config_file(
            config_dir, env)
        self.path = found.absolute()
        self.read_only = read_only
        # Why the store is read-only, for the error a write raises (set by the fallback
        # that opens a file store when the ledger cannot be used).
        self.read_only_reason: str | None = None
        # A fallback must serve what it can: with `lenient`, a value that does not fit
        # the schema is left out (Moltis's default applies) and listed in `problems`,
        # instead of failing every read.
        self.lenient = lenient
        self.problems: list[str] = []
        self.format = config_format(self.path)
        self._snap: _Snapshot | None = None
        # the bytes this store's last write put in the file (None: it wrote nothing):
        # what a caller records as in step with the ledger, not the file read back, which
        # an editor's save in between would have made its own (`record_file_sync`)
        self.written: bytes | None = None
        self._toml: tuple[bytes, TOMLDocument] | None = None
        self._eff_key: tuple[Any, ...] | None = None
        self._eff: Effective | None = None
        self._eff_bytes = b""

    def __repr__(self) -> str:
        return f"FileConfigStore({str(self.path)!r}{', read_only=True' if self.read_only else ''})"

    # -- reading -----------------------------------------------------------------------

    def _snapshot(self, *, verify: bool = False) -> _Snapshot:
        """The current file, parsed; unchanged files answer from the cache."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._missing()
        except OSError as err:
            raise StoreError(f"{self.path}: cannot read: {err.strerror}") from err
        cached = self._snap
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if (cached is not None and cached.key == key and not verify
                and time.time_ns() - st.st_mtime_ns > _RACY_NS):
            return cached
        try:
            data, st = read_regular_stat(self.path)  # a regular file only, size-checked
        except FileNotFoundError:
            return self._missing()
        except OSError as err:
            raise StoreError(f"{self.path}: cannot read: {err.strerror}") from err
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        digest = blake3(data).digest()
        if cached is not None and cached.key is not None and cached.digest == digest:
            cached.key = key
            return cached
        snap = _Snapshot(key, data, digest, self._parse(data))
        self._snap = snap
        return snap

    def _missing(self) -> _Snapshot:
        if self._snap is None or self._snap.key is not None:
            self._snap = _Snapshot(None, b"", blake3(b"").digest(), {})
        return self._snap

    def _parse(self, data: bytes) -> Doc:
        doc = parse_config(self.path, data)
        return self._without_invalid(doc) if self.lenient else doc

    def _without_invalid(self, doc: Doc) -> Doc:
        from ledger.core.keypaths import parse_path  # lazy: loaded only on this path (CLI start-up)

        problems: list[str] = []
        for _ in range(1000):
            try:
                to_typed(doc, where=str(self.path))
                break
            except ConfigValidationError as err:
                if not err.path:
                    raise
                problems.append(str(err))
                doc, _changed = apply_changes(doc, [Change(op="unset",
                                                          path=parse_path(err.path))])
        if problems:
            _log.warning("invalid values left out of the config being served",
                         path=str(self.path), problems=problems)
        self.problems = problems
        return doc

    def _typed(self, snap: _Snapshot) -> MoltisConfig:
        """The typed view of a snapshot (cached; never handed out, callers get copies)."""
        if snap.typed is None:
            snap.typed = to_typed(snap.doc, where=str(self.path))
            snap.typed_bytes = _codec().encoder.encode(snap.typed)
        return snap.typed

    async def load_raw(self) -> MoltisConfig:
        snap = self._snapshot()
        self._typed(snap)
        return _codec().decoder.decode(snap.typed_bytes)

    async def raw_document(self) -> Doc:
        return copy.deepcopy(self._snapshot().doc)

    async def head_seq(self) -> int:
        """A version token of the file's content (0 when there is no file)."""
        return self._snapshot().seq

    def effective_layers(self, flags: Flags, env: Mapping[str, str] | None
                   ) -> tuple[_Snapshot, Effective]:
        snap = self._snapshot()
        if snap.variables is None:
            snap.variables = referenced_variables(snap.doc)
        key = (snap.digest, snap.key is None, flags.key(),
               environment_key(env, sorted(snap.variables)))
        if self._eff is None or key != self._eff_key:
            # its [config] is this store whatever the file says (a migrated file names
            # the ledger; MOLTIS_CONFIG_BACKEND=file serves it anyway)
            self._eff = wired(effective_config(snap.doc, env=env, flags=flags,
                                               where=str(self.path)), {"backend": "file"})
            self._eff_bytes = _codec().encoder.encode(self._eff.config)
            self._eff_key = key
        return snap, self._eff

    async def load_effective(self, *, flags: Flags = NO_FLAGS,
                             env: Mapping[str, str] | None = None) -> MoltisConfig:
        self.effective_layers(flags, env)
        return _codec().decoder.decode(self._eff_bytes)

    async def source_metadata(self, *, flags: Flags = NO_FLAGS,
                              env: Mapping[str, str] | None = None) -> dict[str, Provenance]:
        snap, eff = self.effective_layers(flags, env)
        where = str(self.path)
        origin = Provenance("file", where, file=where)
        return provenance_map(eff, snap.doc, lambda _path: origin)

    # -- writing -----------------------------------------------------------------------

    async def update_raw(self, fn: Callable[[MoltisConfig], Any], *, actor: str | None = None,
                         reason: str | None = None, source: str = "api",
                         expected_seq: int | None = None) -> Commit:
        def build(snap: _Snapshot) -> list[Change]:
            old = self._typed(snap)
            new = _codec().decoder.decode(snap.typed_bytes)
            returned = fn(new)
            if isinstance(returned, MoltisConfig):
                new = returned
            return self._leaf_changes(typed_changes(old, new, snap.doc), snap.doc)

        return await self._run(build, actor, reason, source, expected_seq)

    async def save_raw(self, cfg: MoltisConfig | Mapping[str, Any], *, actor: str | None = None,
                       reason: str | None = None, source: str = "api",
                       expected_seq: int | None = None) -> Commit:
        if isinstance(cfg, MoltisConfig):
            # a private copy: the caller may keep editing cfg
            encoded = _codec().encoder.encode(cfg)
            return await self.update_raw(lambda _old: _codec().decoder.decode(encoded), actor=actor,
                                         reason=reason, source=source,
                                         expected_seq=expected_seq)
        if not isinstance(cfg, Mapping):
            raise InputError(f"save_raw expects a MoltisConfig or a mapping, got "
                             f"{type(cfg).__name__}")
        new_doc = normalize_document(cfg, "save_raw document")

        def build(snap: _Snapshot) -> list[Change]:
            return [c if c.op == "unset" else
                    Change(op="set", path=c.path, value=self._plain(c.new_value, c.path))
                    for c in diff_documents(snap.doc, new_doc)]

        return await self._run(build, actor, reason, source, expected_seq)

    async def apply_changes(self, raw_changes: Sequence[RawChange], *,
                            actor: str | None = None, reason: str | None = None,
                            source: str = "api", expected_seq: int | None = None) -> Commit:
        def build(snap: _Snapshot) -> list[Change]:
            return self._leaf_changes(replace_tables(raw_changes, snap.doc), snap.doc)

        return await self._run(build, actor, reason, source, expected_seq)

    async def _run(self, build: Callable[[_Snapshot], list[Change]], actor: str | None,
                   reason: str | None, source: str, expected_seq: int | None) -> Commit:
        who = resolve_actor(actor)
        why = check_reason(reason)
        return await run_write(
            lambda wait: self._write(build, who, why, source, expected_seq, wait))

    def _leaf_changes(self, raw_changes: list[RawChange], raw: Doc) -> list[Change]:
        """Changes found on the typed view as leaf changes with plaintext values."""
        out: list[Change] = []
        for rc in raw_changes:
            if rc.op == "unset":
                if get_value(raw, rc.path) is not MISSING:
                    out.append(Change(op="unset", path=rc.path))
                continue
            value = normalize_value(rc.value, rc.path, str(self.path))
            found = leaves(value, rc.path) if isinstance(value, dict) and value else [
                (rc.path, value)]
            out += [Change(op="set", path=p, value=self._plain(v, p)) for p, v in found]
        return out

    def _plain(self, value: Any, path: KeyPath) -> Any:
        """The value as the file stores it: secrets in plaintext, as Moltis does."""
        if isinstance(value, Secret):
            value = value.reveal()
        if isinstance(value, str) and parse_mask(value) is not None:
            p = format_path(path)
            raise ConfigValidationError(
                f"{self.path}: {p}: this is a masked secret placeholder from an export, not "
                "the secret; a file store needs the real value (a masked export cannot be "
                "written back to a file)", p)
        if isinstance(value, SecretRef):
            p = format_path(path)
            raise ConfigValidationError(
                f"{self.path}: {p}: a ledger secret reference cannot be written to a file; "
                "export with secrets revealed", p)
        if isinstance(value, list):
            return [self._plain(v, path) for v in value]
        if isinstance(value, dict):
            return {k: self._plain(v, (*path, k)) for k, v in value.items()}
        return value

    def _write(self, build: Callable[[_Snapshot], list[Change]], actor: str, reason: str,
               source: str, expected_seq: int | None, wait: bool) -> Commit:
        if self.read_only:
            why = self.read_only_reason or "the config store was opened read-only"
            raise ReadOnlyError(f"{self.path}: {why}; nothing was written")
        started = time.perf_counter()
        with locked(self.path, wait=wait):
            snap = self._snapshot(verify=True)
            if expected_seq is not None and expected_seq != snap.seq:
                raise ConflictError(expected_seq, snap.seq)
            changes = build(snap)
            new_doc = apply_changes(snap.doc, changes)[0] if changes else snap.doc
            if same_value(new_doc, snap.doc):
                return Commit(snap.seq, False, snap.digest)
            typed = to_typed(new_doc, where=str(self.path))
            data, new_doc, changes, toml = self._render(snap, new_doc, changes)
            if len(data) > MAX_FILE_BYTES:  # it could not be read back
                raise InputError(f"{self.path}: the new file would be {len(data):,} bytes, over "
                                 f"the limit of {MAX_FILE_BYTES:,}; nothing was written")
            key = self._replace_file(data)
            self.written = data
            # (a pruned empty table does not change the typed view)
            new = _Snapshot(key, data, blake3(data).digest(), new_doc, typed,
                            _codec().encoder.encode(typed))
            self._snap = new
            self._toml = None if toml is None else (new.digest, toml)
        paths = [format_path(c.path) for c in changes]
        _log.info("wrote config file", path=str(self.path), actor=actor, source=source,
                  reason=reason or None, paths=paths,
                  duration_ms=round((time.perf_counter() - started) * 1000, 3))
        return Commit(new.seq, True, new.digest, tuple(changes))

    def _render(self, snap: _Snapshot, new_doc: Doc, changes: list[Change]
                ) -> tuple[bytes, Doc, list[Change], TOMLDocument | None]:
        """The new file bytes, checked by parsing them back."""
        toml: TOMLDocument | None = None
        if self.format == "json":
            text = json.dumps(new_doc, indent=2, ensure_ascii=False) + "\n"
        elif self.format == "yaml":
            from ledger.stores.yaml_edit import edit_yaml  # lazy: ruamel.yaml only for YAML files

            try:
                text = edit_yaml(snap.data.decode("utf-8"), changes)
            except Exception as err:  # ruamel rejecting what the safe loader read, or a bug
                raise StoreError(f"{self.path}: internal error: cannot edit the file "
                                 f"({_editor_error(err)}); nothing was written") from None
        else:
            # tomlkit parses ~20x slower than tomllib: keep the edited document of our last
            # write for the next one, as long as the file still holds exactly its text
            cached, self._toml = self._toml, None
            try:
                toml = cached[1] if cached is not None and cached[0] == snap.digest else (
                    tomlkit.parse(snap.data.decode("utf-8")))
                edit_document(toml, changes)
                text = toml.as_string()
            except Exception as err:  # tomlkit rejecting what tomllib accepted, or a bug
                raise StoreError(f"{self.path}: internal error: cannot edit the file "
                                 f"({_editor_error(err)}); nothing was written") from None
        data = text.encode("utf-8")
        try:
            actual = self._parse(data)
        except ParseError as err:
            raise StoreError(f"{self.path}: internal error: the edited file would not parse "
                             f"({err}); nothing was written") from None
        if not same_value(actual, new_doc):
            # An implicit table (`[a.b]` defines `a`; `x.y = 1` defines `x`) emptied by an
            # unset disappears from the file: keep the model equal to the file.
            gone = pruned_tables(new_doc, actual)
            if gone is None:
                bad = [format_path(c.path) for c in diff_documents(new_doc, actual)]
                raise StoreError(f"{self.path}: internal error: editing the file would also "
                                 f"change {', '.join(bad)}; nothing was written")
            changes = [*changes, *(Change(op="unset", path=p) for p in gone)]
            new_doc = actual
        return data, new_doc, changes, toml

    def _replace_file(self, data: bytes) -> tuple[int, ...]:
        """Write atomically and durably (`ledger.files.safe_io`); returns the new cache key."""
        target = os.path.realpath(self.path)
        try:
            old = os.stat(target)
        except FileNotFoundError:
            old = None
        except OSError as err:
            raise os_error(self.path, err, "write") from err
        if old is not None and not os.access(target, os.W_OK):
            raise os_error(self.path, OSError(errno.EACCES, "the file itself is read-only"),
                           "write")
        st = replace_file(self.path, data)
        if old is not None and (old.st_uid, old.st_gid) != (st.st_uid, st.st_gid):
            with contextlib.suppress(OSError):  # root editing a user's config: still theirs
                os.chown(target, old.st_uid, old.st_gid)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _editor_error(err: Exception) -> str:
    """An editor's error without its text, which may quote the file's values (ruamel's
    duplicate-key error quotes both, secrets included): its kind and where."""
    mark = getattr(err, "problem_mark", None)
    line = mark.line + 1 if mark is not None else getattr(err, "line", None)
    return type(err).__name__ + (f" at line {line}" if isinstance(line, int) else "")
