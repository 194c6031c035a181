"""The typed view of a head state: its own `MoltisConfig` (`pristine`, never handed out)
and the JSON of each top-level section, from which readers' private copies are decoded.

This is the hot path of `update_raw(fn)`, and its cost follows what `fn` changes, not
the size of the config or of a section: `fn` gets a copy made as it reads it, and only
the values it changed are validated and diffed (`ledger.typed.edit_copy`). The next
head's view is the old one patched along the changed paths, with the JSON of the
sections the edit replaced (a view's JSON is complete when it is made, and is what it
serves; an edit checks the sections it reaches against it: `TypedView._check`). An edit
the walk cannot decide takes the whole-section path (`TypedView._edit_sections`), which
names a bad value by its path.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec

from ledger.core.document import MISSING
from ledger.core.secret_refs import Secret, SecretOpener, SecretRef
from ledger.errors import ConfigValidationError
from ledger.schema import MoltisConfig
from ledger.schema.introspect import ROOT, TypeNode, section_info
from ledger.typed.convert import (
    RawChange,
    diff_top_level,
    sanitize_message,
    section_to_typed,
    to_typed,
)
from ledger.typed.edit_copy import (
    Unsure,
    drop_none_entries,
    edit_copy,
    privatized,
    untwin,
    walk,
)
from ledger.typed.edit_plan import RootPlan
from ledger.typed.freeform import Located, locate_refs, node_has_freeform, revive, revive_at

__all__ = ["EDIT_FIX", "Edit", "StaleView", "TypedCodec", "TypedView"]

T = TypeVar("T")
_ROOT_INFO = section_info(MoltisConfig)
# Each section is kept as `"key":{...}`, so the whole config is one join away.
_PREFIXES = [b'"%s":' % fn.key.encode() for fn, _ in _ROOT_INFO.positions]
_SECTION_INDEX = {fn.attr: i for i, (fn, _) in enumerate(_ROOT_INFO.positions)}
# what a typed edit's wrong-typed value error suggests (after its path and types)
EDIT_FIX = "; give it a value of the expected type (see `moltis-ledger show` for its current one)"
_ALIASED = frozenset(_ROOT_INFO.aliases.values())  # sections that also have an old name


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Secret):
        ref = obj.ref
        if ref is not None and not ref.ref:  # a mask nothing resolves (Secret.placeholder)
            return obj.masked()  # its text: decoded as a placeholder again
        if ref is not None:
            return {"$secret": ref.ref, "fp": ref.fp}
        return obj.reveal()  # an unsaved value: it stays in this process's memory
    # a TypeError (not NotImplementedError) is what msgspec and the edit path expect of
    # a value JSON cannot hold: the caller gets a validation error naming where it is
    raise TypeError(f"Expected a config value (str, number, bool, list or table), "
                    f"got `{type(obj).__name__}`")


class StaleView(Exception):  # noqa: N818 (a verdict: the caller rebuilds the view)
    """A view's own values no longer encode to its sections' JSON: something changed
    them in place (a C-level reader of a caller's copy, review r7). The JSON is what
    the ledger wrote; the caller drops the view and builds one from the raw document."""


class _Decoder(Generic[T]):
    """A msgspec JSON decoder whose result has the secrets of free-form maps (which
    JSON decodes as plain `{"$secret": ..., "fp": ...}` objects) made `Secret`s again."""

    __slots__ = ("_freeform", "_inner", "_node", "_opener")

    def __init__(self, tp: type[T], node: TypeNode, opener: SecretOpener | None,
                 dec_hook: Callable[[type, Any], Any]) -> None:
        self._inner: msgspec.json.Decoder[T] = msgspec.json.Decoder(tp, dec_hook=dec_hook)
        self._node = node
        self._opener = opener
        self._freeform = node_has_freeform(node)

    def decode(self, data: bytes) -> T:
        value = self._inner.decode(data)
        if self._freeform:
            # a Struct is revived in place; a free-form value or a map of them (a
            # changed value alone, `TypedCodec.canon`) comes back as a new object
            value = revive(value, self._opener, self._node)
        return value

    def decode_located(self, data: bytes, located: Located | None) -> tuple[T, Located]:
        """`decode`, reviving the places a decode of the same bytes found (`located`;
        None: find them now) instead of walking every free-form value again."""
        value = self._inner.decode(data)
        if not self._freeform:
            return value, []
        if located is None:
            located = locate_refs(value, self._node)
        return revive_at(value, located, self._opener), located

    def decode_plain(self, data: bytes) -> T:
        """Decode JSON known to hold no stored reference in its free-form maps (an
        encoding of the gateway's plain view): no walk needed."""
        return self._inner.decode(data)


class TypedCodec:
    """Encoders and decoders for typed configs, with secrets bound to one vault.

    The decoders are built on first use (tens of milliseconds for the whole schema):
    commands that only read the raw document never pay for them."""

    def __init__(self, opener: SecretOpener | None) -> None:
        self.opener = opener

    def _dec_hook(self, tp: type, obj: Any) -> Any:
        # msgspec turns a TypeError raised here into a ValidationError located at the
        # value (`- at $.path`); anything else would escape as a bare Python error.
        # The message names types only, never the value (it may be a secret).
        if tp is Secret:
            if isinstance(obj, str):
                return Secret.placeholder(obj) or Secret(obj)  # as typed.convert reads it
            if (isinstance(obj, dict) and obj.keys() == {"$secret", "fp"}
                    and isinstance(obj["$secret"], str) and isinstance(obj["fp"], str)):
                return Secret.stored(SecretRef(ref=obj["$secret"], fp=obj["fp"]), self.opener)
            raise TypeError(f"Expected `str` (a secret's value), got `{_json_type(obj)}`")
        raise TypeError(f"Expected `{getattr(tp, '__name__', tp)}`, got `{_json_type(obj)}`")

    @functools.cached_property
    def encoder(self) -> msgspec.json.Encoder:
        return msgspec.json.Encoder(enc_hook=_enc_hook)

    @functools.cached_property
    def decoder(self) -> _Decoder[MoltisConfig]:
        return _Decoder(MoltisConfig, ROOT, self.opener, self._dec_hook)

    # The same typed config as MessagePack, for a copy decoded again and again (a
    # cached `load_effective`): it decodes in about half the time of its JSON (i16i).
    # Only for configs that hold no stored reference (the plain view): free-form maps
    # would need `revive`, which the JSON decoder's callers do.
    @functools.cached_property
    def pack_encoder(self) -> msgspec.msgpack.Encoder:
        return msgspec.msgpack.Encoder(enc_hook=_enc_hook)

    @functools.cached_property
    def pack_decoder(self) -> msgspec.msgpack.Decoder[MoltisConfig]:
        return msgspec.msgpack.Decoder(MoltisConfig, dec_hook=self._dec_hook)

    @functools.cached_property
    def section_decoders(self) -> list[_Decoder[Any]]:
        return [_Decoder(fn.node.annotation, fn.node, self.opener, self._dec_hook)
                for fn, _ in _ROOT_INFO.positions]

    def view_of(self, typed: MoltisConfig, key: object) -> TypedView:
        """A view owning `typed` (the caller must not keep changing it); its sections
        are encoded now, so that what it serves never depends on `typed` staying as it
        is (TypedView.edit checks the sections an edit reaches against them)."""
        return TypedView(self, key, typed, _encoded(self, typed, [None] * len(_PREFIXES)))

    @functools.cached_property
    def _node_decoders(self) -> dict[TypeNode, _Decoder[Any]]:
        return {}

    def canon(self, value: Any, node: TypeNode) -> Any:
        """`value` as the decode of its section makes it at a position typed `node`
        (the same msgspec type, constraints and free-form secrets): the validation of
        one changed value. Raises `Unsure` when it does not encode or validate (the
        whole-section path then names the problem)."""
        decoder = self._node_decoders.get(node)
        if decoder is None:
            decoder = _Decoder(node.annotation, node, self.opener, self._dec_hook)
            self._node_decoders[node] = decoder
        try:
            return decoder.decode(self.encoder.encode(value))
        except (msgspec.ValidationError, TypeError, ValueError, OverflowError):
            raise Unsure from None

    def view_of_raw(self, raw: dict[str, Any], key: object, where: str) -> TypedView:
        return self.view_of(to_typed(raw, self.opener, where=where), key)


def _encoded(codec: TypedCodec, typed: MoltisConfig, sections: list[bytes | None]
             ) -> list[bytes | None]:
    """`sections` with the missing ones (None) encoded from `typed`, in place. A view's
    sections are all encoded when it is made: what it serves never depends on its
    values staying as they are (`TypedView._check`)."""
    missing = [*itertools.compress(range(len(sections)),
                                   map(operator.is_, sections, itertools.repeat(None)))]
    if missing:
        values = msgspec.structs.astuple(typed)
        encode = codec.encoder.encode
        for i in missing:
            sections[i] = _PREFIXES[i] + encode(values[i])
    return sections


def _json_type(obj: Any) -> str:
    """The JSON name of a decoded value's type (as msgspec's own messages say it)."""
    names = {dict: "object", list: "array", str: "str", int: "int", float: "float",
             bool: "bool", type(None): "null"}
    return names.get(type(obj), type(obj).__name__)


def _unencodable_at(value: Any, encode: Callable[[Any], bytes]) -> str:
    """The config path (below its section) of the first value in `value` that cannot be
    encoded: walks down through the parts that fail to encode."""
    where = ""
    while True:
        if isinstance(value, msgspec.Struct):
            parts = [(f.encode_name, getattr(value, f.name))
                     for f in msgspec.structs.fields(value)]
        elif isinstance(value, dict):
            parts = [(str(k), v) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            parts = [(str(i), v) for i, v in enumerate(value)]
        else:
            return where
        for name, part in parts:
            try:
                encode(part)
            except (TypeError, ValueError, OverflowError):
                where, value = f"{where}.{name}", part
                break
        else:
            return where


class TypedView:
    """The typed config of one head state (`key` identifies which).

    `pristine` is this view's own instance, never handed to anyone (so nobody can change
    it); edits are found by comparing the sections a caller touched against it.
    `sections` are the JSON of each section, from which private copies are decoded."""

    __slots__ = ("_codec", "_located", "_plan", "_prior_plan", "_shared", "_whole", "key",
                 "pristine", "sections")

    def __init__(self, codec: TypedCodec, key: object, pristine: MoltisConfig,
                 sections: list[bytes | None], located: Located | None = None,
                 prior_plan: RootPlan | None = None) -> None:
        self._codec = codec
        self.key = key
        self.pristine = pristine
        self.sections = sections
        self._whole: bytes | None = None
        self._shared: MoltisConfig | None = None
        # where the whole config's JSON holds free-form secrets (found on the first
        # decode): every later copy revives just those places
        self._located = located
        self._plan: RootPlan | None = None  # edit_copy's per-view work, on the first edit
        # the plan of the view before this one (RootPlan takes over its unchanged
        # sections' entries), dropped once this view's own is built
        self._prior_plan = prior_plan

    @property
    def codec(self) -> TypedCodec:
        return self._codec

    def rebind(self, codec: TypedCodec) -> TypedView:
        """This view with copies decoded by another codec (secrets bound to another
        ledger's vault on the same database)."""
        return TypedView(codec, self.key, self.pristine, self.sections, self._located,
                         self._any_plan())

    def whole(self) -> bytes:
        if self._whole is None:
            # never None in a view (`_encoded`)
            self._whole = b"{" + b",".join(self.sections) + b"}"  # type: ignore[arg-type]
        return self._whole

    def fresh(self) -> MoltisConfig:
        """A private copy the caller may change: a new decode, so nothing in it is
        shared with the view or with another copy (figure i16k: the head read)."""
        value, self._located = self._codec.decoder.decode_located(self.whole(),
                                                                 self._located)
        return value

    def shared(self) -> MoltisConfig:
        """One instance shared by every reader of this state: do not change it."""
        if self._shared is None:
            self._shared = self.fresh()
        return self._shared

    def edit(self, fn: Callable[[MoltisConfig], Any], raw: dict[str, Any]) -> Edit:
        """Run `fn` on a private copy (`ledger.typed.edit_copy`) and return the raw
        changes it made, the new sections and the first validation problem."""
        plan = self._plan
        if plan is None:
            plan = self._plan = RootPlan(self.pristine, self._prior_plan)
            self._prior_plan = None
        copy = edit_copy(self.pristine, plan)
        before = privatized()
        returned = fn(copy)
        # the sections fn's copy reached (it read a list, map or Struct of them) and
        # those the edit replaces must still be what the ledger wrote (_check)
        reached = plan.reached(copy) if privatized() != before else []
        # another config (not the copy, edited or not) is compared the same way: its
        # sections are not the view's own objects, so each is canonicalized whole
        new = returned if isinstance(returned, MoltisConfig) else copy
        try:
            changes, replaced, reorder = walk(self.pristine, new, raw, self._codec.canon,
                                              plan)
        except Unsure:
            result = self._edit_sections(new, raw)
        else:
            sections = self.sections
            if replaced:
                sections = list(sections)
                for attr in replaced:
                    sections[_SECTION_INDEX[attr]] = None  # encoded by `after`
            result = Edit(changes, sections, replaced)
            result.reorder = reorder
        self._check(sorted({*reached, *map(_SECTION_INDEX.__getitem__, result.replaced)}))
        return result

    def _check(self, slots: list[int]) -> None:
        """Raise StaleView if a root value of this view at `slots` no longer encodes to
        its section's JSON. Sections are always encoded when a view is made (view_of,
        after, advanced), so the JSON is what the ledger wrote; the check costs one
        encode of each section an edit reached (review r7 finding 1: a caller's copy
        can hand out this view's nested objects through a C-level reader)."""
        if not slots:
            return
        values = msgspec.structs.astuple(self.pristine)
        encode = self._codec.encoder.encode
        for i in slots:
            if _PREFIXES[i] + encode(values[i]) != self.sections[i]:
                raise StaleView(_ROOT_INFO.positions[i][0].key)

    def _edit_sections(self, new: MoltisConfig, raw: dict[str, Any]) -> Edit:
        """The whole-section path: every section of `new` that is not the view's own
        object is encoded, decoded (its validation) and compared field by field. It
        names an invalid or unstorable value by its path."""
        old_values = msgspec.structs.astuple(self.pristine)
        new_values = msgspec.structs.astuple(new)
        codec = self._codec
        result = Edit([], self.sections, {})
        for i, (old_value, copied) in enumerate(zip(old_values, new_values, strict=True)):
            if old_value is copied:
                continue
            # as the plain Structs the copy stands for (twins never equal their base)
            new_value = untwin(copied)
            if old_value == new_value:  # C-level, Python's `==` (True == 1)
                continue
            field = _ROOT_INFO.positions[i][0]
            try:
                data = codec.encoder.encode(new_value)
            except (TypeError, ValueError, OverflowError) as err:
                where = f"{field.key}{_unencodable_at(new_value, codec.encoder.encode)}"
                raise ConfigValidationError(
                    f"update: {where}: a value cannot be stored: "
                    f"{sanitize_message(str(err)).replace('`', '')}{EDIT_FIX}", where) from None
            try:
                # decoding the edited section is the validation of the edit, and gives
                # the next view a private, canonical instance of it
                decoded = codec.section_decoders[i].decode(data)
            except msgspec.ValidationError as err:
                decoded = new_value
                result.problem = result.problem or _located(field.key, str(err))
                replace = False
            else:
                replace = True
            diff_top_level(field, old_value, decoded, raw.get(field.key, MISSING),
                           result.changes)
            if replace:
                if result.sections is self.sections:
                    result.sections = list(self.sections)
                result.sections[i] = None
                result.replaced[field.attr] = drop_none_entries(decoded, field.node)
                result.reorder = True  # decoded in fn's order, whatever the raw one is
        return result

    def after(self, key: object, edit: Edit) -> TypedView:
        """The view of the state that `edit` produced (unchanged sections are shared)."""
        pristine = msgspec.structs.replace(self.pristine, **edit.replaced)
        # the sections the edit replaced are encoded now, not by a later read: the view
        # must serve what was written even if a caller's copy changes its values
        return TypedView(self._codec, key, pristine,
                         _encoded(self._codec, pristine, edit.sections),
                         prior_plan=self._any_plan())

    def advanced(self, key: object, old_raw: dict[str, Any], new_raw: dict[str, Any],
                 opener: SecretOpener | None = None) -> TypedView | None:
        """The view of `new_raw`, a later document of the same history as `old_raw` (this
        view's), made by re-converting only the top-level sections that changed. The
        log's replay is copy-on-write, so a section it did not touch is the very same
        object in both documents (events of other writers, caught up on, cost what they
        changed, not the config's size). None when that cannot be done here (a section
        removed or invalid, an old alias): the caller converts the whole document.
        `opener` opens secrets for the conversion (default: the codec's vault; a write
        passes its transaction's, which also opens what it sealed but did not commit)."""
        opener = opener or self._codec.opener
        replaced: dict[str, Any] = {}
        sections = self.sections
        for raw_key in old_raw.keys() | new_raw.keys():
            value = new_raw.get(raw_key, MISSING)
            if value is old_raw.get(raw_key, MISSING):
                continue
            field = _ROOT_INFO.fields.get(raw_key)
            if field is None:
                if raw_key in _ROOT_INFO.aliases or _ROOT_INFO.flatten is not None:
                    return None
                continue  # an unknown key: the typed view never holds it
            if value is MISSING or field.key in _ALIASED:
                return None
            try:
                typed = section_to_typed(value, field.node, opener)
                data = self._codec.encoder.encode(typed)
            except (msgspec.ValidationError, TypeError, ValueError):
                return None
            if sections is self.sections:
                sections = list(self.sections)
            i = _SECTION_INDEX[field.attr]
            sections[i] = _PREFIXES[i] + data
            replaced[field.attr] = typed
        pristine = msgspec.structs.replace(self.pristine, **replaced)
        return TypedView(self._codec, key, pristine, sections, prior_plan=self._any_plan())

    def same_config(self, key: object) -> TypedView:
        """This view for another state with the same config document."""
        return TypedView(self._codec, key, self.pristine, self.sections, self._located,
                         self._any_plan())

    def _any_plan(self) -> RootPlan | None:
        """What the next view's plan can start from: this view's, or the one it would
        have started from (a view never edited passes its prior on)."""
        return self._plan or self._prior_plan


class Edit:
    """What a caller's function did: the raw changes, the new sections (the next head's
    view when `problem` is None), and the first validation problem."""

    __slots__ = ("changes", "problem", "reorder", "replaced", "sections")

    def __init__(self, changes: list[RawChange], sections: list[bytes | None],
                 replaced: dict[str, Any]) -> None:
        self.changes = changes
        self.sections = sections
        self.replaced = replaced
        self.problem: str | None = None
        # a map of `replaced` may be in another order than the raw document after
        # `changes` (see edit_copy._Walker): the next view is then the raw document's
        self.reorder = False


def _located(section: str, message: str) -> str:
    """msgspec says `... - at `$.port``; name the config path instead (and never echo
    the offending value)."""
    _, _, where = message.partition(" - at `$")
    where = where.rstrip("`").replace(".entries[...]", ".<name>").replace("[...]", ".<key>")
    return f"{section}{where}: {sanitize_message(message)}{EDIT_FIX}"

