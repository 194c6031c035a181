"""The raw document: the tree of keys a user explicitly set, and path-level edits on it.

A document is a dict of str keys whose leaves are TOML values (str, int, float, bool,
lists) or `SecretRef`s; an empty dict is a leaf too (an empty `[table]`). Changes
only ever *set* leaves, and *unset* a path with everything under it, so per-leaf
provenance stays exact. Applying changes is copy-on-write along the changed paths,
so a state shared with readers never changes under them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from ledger.core.events import Change, DocName
from ledger.core.keypaths import KeyPath, format_path
from ledger.core.secret_refs import Secret, SecretRef, is_ref_marker
from ledger.errors import ConfigValidationError

__all__ = [
    "MISSING",
    "apply_changes",
    "copy_value",
    "diff_documents",
    "get_value",
    "leaves",
    "normalize_document",
    "same_value",
]

Doc = dict[str, Any]
MAX_DEPTH: Final = 64
# A configuration value is a key, a URL or a prompt, not a data set: larger text is a
# mistake (or an attack), refused before it reaches the log forever.
MAX_TEXT_CHARS: Final = 1 << 20
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


def copy_value(value: Any) -> Any:
    """A document value (a table, a list, a leaf) as the caller's own: every table and
    list at any depth copied; leaves (text, numbers, `SecretRef`s, dates) are immutable
    and shared. The one copy for whatever a read hands out of a cached state."""
    cls = value.__class__
    if cls is dict:  # a stored document's own tables and lists: the common, fast case
        return {k: v if v.__class__ in _FLAT else copy_value(v) for k, v in value.items()}
    if cls is list:
        return [v if v.__class__ in _FLAT else copy_value(v) for v in value]
    if isinstance(value, dict):
        return {k: copy_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_value(v) for v in value]
    return value


_FLAT: Final = frozenset({str, int, float, bool, type(None)})


def get_value(doc: Mapping[str, Any], path: KeyPath) -> Any:
    """The value at `path`, or MISSING."""
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return MISSING
        node = node[key]
    return node


def same_value(a: Any, b: Any) -> bool:
    """Equality that also compares types (so `1`, `1.0` and `true` differ, as in TOML)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(v, b[k]) for k, v in a.items())
    return bool(a == b)


def leaves(doc: Mapping[str, Any], prefix: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """Every leaf (non-table value or empty table) with its path, in document order."""
    for key, value in doc.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            yield from leaves(value, path)
        else:
            yield path, value


def _set_leaves(path: KeyPath, value: Any, doc: DocName, out: list[Change]) -> None:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            _set_leaves((*path, key), child, doc, out)
    elif isinstance(value, SecretRef):
        out.append(Change(op="set", path=path, secret=value, doc=doc))
    else:
        out.append(Change(op="set", path=path, value=value, doc=doc))


def diff_documents(
    old: Mapping[str, Any], new: Mapping[str, Any], doc: DocName = "config", prefix: KeyPath = ()
) -> list[Change]:
    """The changes that turn `old` into `new`: unsets first, then sets, in key order."""
    out: list[Change] = []
    _diff(old, new, doc, prefix, out)
    return out


def _diff(old: Mapping[str, Any], new: Mapping[str, Any], doc: DocName, prefix: KeyPath,
          out: list[Change]) -> None:
    for key in old:
        if key not in new:
            out.append(Change(op="unset", path=(*prefix, key), doc=doc))
    for key, nv in new.items():
        path = (*prefix, key)
        ov = old.get(key, MISSING)
        if ov is MISSING:
            _set_leaves(path, nv, doc, out)
        elif isinstance(ov, dict) and isinstance(nv, dict) and ov and nv:
            _diff(ov, nv, doc, path, out)
        elif same_value(ov, nv):
            continue
        elif isinstance(ov, dict) and ov:
            # a table became a value (or an empty table): drop its children first
            out.append(Change(op="unset", path=path, doc=doc))
            _set_leaves(path, nv, doc, out)
        elif isinstance(nv, dict) and nv and not isinstance(ov, dict):
            out.append(Change(op="unset", path=path, doc=doc))
            _set_leaves(path, nv, doc, out)
        else:
            _set_leaves(path, nv, doc, out)


def apply_changes(
    root: Doc, changes: Sequence[Change], prov: Doc | None = None, seq: int = 0,
    *, owned: dict[int, Doc] | None = None,
) -> tuple[Doc, Doc | None]:
    """Apply `changes` to a document and its provenance tree (whose leaves are seqs).

    Copy-on-write: dicts on the changed paths are copied once and unchanged subtrees are
    shared, so the inputs are never modified. `owned` maps id -> dict for dicts already
    private to the caller (pass the same mapping across calls to batch several events
    into one copy); a dict listed there is edited in place.
    """
    fresh: dict[int, Doc] = {} if owned is None else owned

    def own(d: Doc) -> Doc:
        if id(d) in fresh:
            return d
        c = dict(d)
        fresh[id(c)] = c  # holding the dict keeps its id from being reused
        return c

    root = own(root)
    if prov is not None:
        prov = own(prov)
    for ch in changes:
        apply_change(root, prov, ch, seq, own)
    return root, prov


def apply_in_place(root: Doc, prov: Doc, changes: Sequence[Change], seq: int) -> None:
    """`apply_changes` for a state the caller owns outright (a replay from a decoded
    snapshot): the same walk, with none of the copy-on-write bookkeeping."""
    for ch in changes:
        apply_change(root, prov, ch, seq, None)


def apply_change(root: Doc, prov: Doc | None, ch: Change, seq: int,
                 own: Callable[[Doc], Doc] | None) -> None:
    """One change, one walk down the document and its provenance tree together. `root`
    and `prov` are already the caller's; `own` makes each dict below them so (None: they
    are all the caller's already). This is the replay's inner loop: keep it lean."""
    path = ch.path
    unset = ch.op == "unset"
    node, pnode = root, prov
    for key in path[:-1]:
        child = node.get(key)
        if child.__class__ is not dict and not isinstance(child, dict):
            if unset:
                return  # nothing there to remove
            if child is not None:
                raise _in_the_way(path, node, root)
            child = node[key] = {}
        elif own is not None:
            child = node[key] = own(child)
        node = child
        if pnode is not None:
            pchild = pnode.get(key)
            if pchild.__class__ is not dict and not isinstance(pchild, dict):
                pchild = pnode[key] = {}  # an empty table that gains children: not a leaf
            elif own is not None:
                pchild = pnode[key] = own(pchild)
            pnode = pchild
    leaf = path[-1]
    if unset:
        node.pop(leaf, None)
        if pnode is not None:
            pnode.pop(leaf, None)
            if not pnode and len(path) > 1 and prov is not None:
                parent = _walk(prov, path[:-2])
                if parent is not None:
                    parent[path[-2]] = seq  # now an empty table, made so by this event
    else:
        node[leaf] = ch.secret if ch.secret is not None else ch.value
        if pnode is not None:
            pnode[leaf] = seq


def _in_the_way(path: KeyPath, node: Doc, root: Doc) -> ConfigValidationError:
    """The error for setting below a value (the slow path finds which prefix it is)."""
    for i in range(1, len(path)):
        if not isinstance(get_value(root, path[:i]), dict):
            return ConfigValidationError(
                f"cannot set {format_path(path)}: {format_path(path[:i])} is a value, not a "
                "table", format_path(path))
    return ConfigValidationError(f"cannot set {format_path(path)}", format_path(path))


def own_all(tree: Doc, owned: dict[int, Doc]) -> None:
    """Mark every dict of a tree the caller owns outright (e.g. freshly decoded) as
    editable in place."""
    owned[id(tree)] = tree
    for v in tree.values():
        if isinstance(v, dict):
            own_all(v, owned)


def _walk(tree: Doc, path: KeyPath) -> Doc | None:
    node: Any = tree
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def normalize_document(value: Mapping[str, Any], where: str) -> Doc:
    """Check that a document holds only TOML values, converting TOML dates to ISO text.

    `where` names the input (a file, "--value", ...) for error messages.
    """
    return _normalize_table(value, (), where)


def normalize_value(value: Any, path: KeyPath, where: str) -> Any:
    if isinstance(value, bool | str):
        if isinstance(value, str):
            _check_text(value, path, where)
        return value
    if isinstance(value, int):
        if not _I64_MIN <= value <= _I64_MAX:
            raise _bad(path, where, "integer does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _bad(path, where, "nan and inf are not supported (they have no JSON form)")
        return value
    if isinstance(value, SecretRef | Secret):
        return value
    if isinstance(value, Mapping):
        return _normalize_table(value, path, where)
    if isinstance(value, list | tuple):
        if len(path) >= MAX_DEPTH:
            raise _bad(path, where, f"nesting deeper than {MAX_DEPTH} levels")
        return [normalize_value(v, (*path, str(i)), where) for i, v in enumerate(value)]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        # TOML dates have no JSON form; the ledger keeps their ISO text.
        return value.isoformat()
    raise _bad(path, where, f"unsupported value of type {type(value).__name__}")


def _normalize_table(value: Mapping[str, Any], path: KeyPath, where: str) -> Doc:
    if len(path) >= MAX_DEPTH:
        raise _bad(path, where, f"nesting deeper than {MAX_DEPTH} levels")
    if is_ref_marker(value):
        # the stored form of a sealed value inside a list: given as input, it would pose
        # as a reference to another stored secret
        raise _bad(path, where, 'a table of exactly "$secret" and "fp" is how the ledger '
                                "stores a sealed value; give the value itself")
    out: Doc = {}
    for key, child in value.items():
        if not isinstance(key, str):
            raise _bad(path, where, f"key {key!r} is not a string")
        _check_text(key, (*path, key), where)
        out[key] = normalize_value(child, (*path, key), where)
    return out


def _check_text(text: str, path: KeyPath, where: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise _bad(path, where, f"text of {len(text):,} characters is over the limit of "
                                f"{MAX_TEXT_CHARS:,} for one configuration value")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(path, where, "text is not valid UTF-8") from None


def _bad(path: KeyPath, where: str, why: str) -> ConfigValidationError:
    p = format_path(path) if path else "<root>"
    return ConfigValidationError(f"{where}: {p}: {why}", p)
