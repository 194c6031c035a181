"""The typed view of a head state, kept as one JSON blob per top-level section.

This is the hot path of `update_raw(fn)`. The caller's function gets a private typed
copy; the edit is found by re-encoding each section of that copy and comparing bytes
(much cheaper than comparing Struct trees), and only the sections whose bytes differ are
decoded (which validates them) and compared field by field. The next head's view is
the old sections with the changed ones replaced, so nothing is re-encoded or
re-decoded as a whole on a write; a private copy for the next caller is decoded once,
lazily, and handed out only once.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

import msgspec

from ledger.core.document import MISSING
from ledger.core.secret_refs import Secret, SecretOpener, SecretRef
from ledger.errors import ConfigValidationError
from ledger.schema import MoltisConfig
from ledger.schema.introspect import section_info
from ledger.typed.convert import RawChange, diff_top_level, sanitize_message, to_typed

__all__ = ["Edit", "TypedCodec", "TypedView"]

_ROOT_INFO = section_info(MoltisConfig)
# Each section is kept as `"key":{...}`, so the whole config is one join away.
_PREFIXES = [b'"%s":' % fn.key.encode() for fn, _ in _ROOT_INFO.positions]


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Secret):
        ref = obj.ref
        if ref is not None:
            return {"$secret": ref.ref, "fp": ref.fp}
        return obj.reveal()  # an unsaved value: it stays in this process's memory
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


class TypedCodec:
    """Encoders and decoders for typed configs, with secrets bound to one vault.

    The decoders are built on first use (tens of milliseconds for the whole schema):
    commands that only read the raw document never pay for them."""

    def __init__(self, opener: SecretOpener | None) -> None:
        self.opener = opener

    def _dec_hook(self, tp: type, obj: Any) -> Any:
        if tp is Secret:
            if isinstance(obj, dict):
                return Secret.stored(SecretRef(ref=obj["$secret"], fp=obj["fp"]), self.opener)
            if isinstance(obj, str):
                return Secret(obj)
        raise NotImplementedError

    @functools.cached_property
    def encoder(self) -> msgspec.json.Encoder:
        return msgspec.json.Encoder(enc_hook=_enc_hook)

    @functools.cached_property
    def decoder(self) -> msgspec.json.Decoder[MoltisConfig]:
        return msgspec.json.Decoder(MoltisConfig, dec_hook=self._dec_hook)

    @functools.cached_property
    def section_decoders(self) -> list[msgspec.json.Decoder[Any]]:
        return [msgspec.json.Decoder(fn.node.annotation, dec_hook=self._dec_hook)
                for fn, _ in _ROOT_INFO.positions]

    def sections_of(self, typed: MoltisConfig) -> list[bytes]:
        return list(map(bytes.__add__, _PREFIXES,
                        map(self.encoder.encode, msgspec.structs.astuple(typed))))

    def view_of(self, typed: MoltisConfig, key: object) -> TypedView:
        """A view owning `typed` (the caller must not keep changing it)."""
        return TypedView(self, key, typed, self.sections_of(typed))

    def view_of_raw(self, raw: dict[str, Any], key: object, where: str) -> TypedView:
        return self.view_of(to_typed(raw, self.opener, where=where), key)


class TypedView:
    """The typed config of one head state (`key` identifies which).

    `pristine` is this view's own instance, never handed to anyone (so nobody can change
    it); edits are found by comparing a caller's copy against it, section by section.
    `sections` are the JSON of each section, from which private copies are decoded.

    After a write, the caller's edited copy is kept as the next caller's copy (with the
    sections it changed freshly decoded), so consecutive writes skip decoding a whole
    config. It is handed out only if it still equals `pristine`: a copy someone changed
    after their write returned is never reused."""

    __slots__ = ("_codec", "_shared", "_spare", "_whole", "key", "pristine", "sections")

    def __init__(self, codec: TypedCodec, key: object, pristine: MoltisConfig,
                 sections: list[bytes]) -> None:
        self._codec = codec
        self.key = key
        self.pristine = pristine
        self.sections = sections
        self._whole: bytes | None = None
        self._shared: MoltisConfig | None = None
        self._spare: MoltisConfig | None = None

    @property
    def codec(self) -> TypedCodec:
        return self._codec

    def rebind(self, codec: TypedCodec) -> TypedView:
        """This view with copies decoded by another codec (secrets bound to another
        ledger's vault on the same database); the spare copy stays behind."""
        return TypedView(codec, self.key, self.pristine, self.sections)

    def whole(self) -> bytes:
        if self._whole is None:
            self._whole = b"{" + b",".join(self.sections) + b"}"
        return self._whole

    def fresh(self) -> MoltisConfig:
        """A private copy the caller may change."""
        spare, self._spare = self._spare, None
        if spare is not None and spare == self.pristine:
            return spare
        return self._codec.decoder.decode(self.whole())

    def shared(self) -> MoltisConfig:
        """One instance shared by every reader of this state: do not change it."""
        if self._shared is None:
            self._shared = self._codec.decoder.decode(self.whole())
        return self._shared

    def edit(self, fn: Callable[[MoltisConfig], Any], raw: dict[str, Any]) -> Edit:
        """Run `fn` on a private copy and return the raw changes it made."""
        copy = self.fresh()
        returned = fn(copy)
        # the caller's copy may serve the next caller, unless it returned another object
        # (which it may keep using)
        reusable = returned is None or returned is copy
        if isinstance(returned, MoltisConfig):
            copy = returned
        codec = self._codec
        old_values = msgspec.structs.astuple(self.pristine)
        new_values = msgspec.structs.astuple(copy)
        result = Edit([], self.sections, {})
        # Struct equality is C-level and stops at the first difference: only the
        # sections the caller touched are looked at in Python.
        for i in [i for i, same in enumerate(map(operator.eq, old_values, new_values))
                  if not same]:
            field = _ROOT_INFO.positions[i][0]
            try:
                data = codec.encoder.encode(new_values[i])
            except (TypeError, ValueError, OverflowError) as err:
                raise ConfigValidationError(
                    f"update: {field.key}: a value cannot be stored: {err}") from None
            try:
                # decoding the edited section is the validation of the edit, and gives
                # the next view a private, canonical instance of it
                new_value = codec.section_decoders[i].decode(data)
            except msgspec.ValidationError as err:
                new_value = new_values[i]
                result.problem = result.problem or _located(field.key, str(err))
            else:
                if result.sections is self.sections:
                    result.sections = list(self.sections)
                result.sections[i] = _PREFIXES[i] + codec.encoder.encode(new_value)
                result.replaced[field.attr] = new_value
                if reusable:
                    result.spare_parts[field.attr] = codec.section_decoders[i].decode(data)
            diff_top_level(field, old_values[i], new_value, raw.get(field.key, MISSING),
                           result.changes)
        if reusable and result.problem is None:
            result.spare = msgspec.structs.replace(copy, **result.spare_parts)
        return result

    def after(self, key: object, edit: Edit) -> TypedView:
        """The view of the state that `edit` produced (unchanged sections are shared)."""
        pristine = msgspec.structs.replace(self.pristine, **edit.replaced)
        view = TypedView(self._codec, key, pristine, edit.sections)
        view._spare = edit.spare
        return view

    def same_config(self, key: object) -> TypedView:
        """This view for another state with the same config document."""
        return TypedView(self._codec, key, self.pristine, self.sections)


class Edit:
    """What a caller's function did: the raw changes, the new sections (the next head's
    view when `problem` is None), and the first validation problem."""

    __slots__ = ("changes", "problem", "replaced", "sections", "spare", "spare_parts")

    def __init__(self, changes: list[RawChange], sections: list[bytes],
                 replaced: dict[str, Any]) -> None:
        self.changes = changes
        self.sections = sections
        self.replaced = replaced
        self.problem: str | None = None
        self.spare: MoltisConfig | None = None
        self.spare_parts: dict[str, Any] = {}


def _located(section: str, message: str) -> str:
    """msgspec says `... - at `$.port``; name the config path instead (and never echo
    the offending value)."""
    _, _, where = message.partition(" - at `$")
    where = where.rstrip("`").replace(".entries[...]", ".<name>").replace("[...]", ".<key>")
    return f"{section}{where}: {sanitize_message(message)}"
