"""Sealing the secrets inside a list value (the secret policy's rules 1-4 below a list).

A list is one leaf of the raw document (`[[hooks.hooks]]`, MCP `args`), so its secrets
cannot be separate sealed leaves: they are sealed where they stand and the list holds
their references (`SecretRef`s as elements, or as values of the tables inside it;
stored as `{"$secret": ref, "fp": fp}`, see `ledger.core.events.Change`).

Writing the same list again must not record anything: a plaintext whose fingerprint
matches a reference already in the current list reuses that reference, so the sealed
list equals the current one and `materialize` records no change.

A mask placeholder (`<secret fp:…>`, from a masked file or export) stands for the
element of the current list with that fingerprint, wherever it stands now (positions
shift). A mask the current list does not hold, while that list holds a live secret, is
refused naming the list's path, by the same rule and words as for a single secret
(`ledger.typed.masks`): no element can be paired with the one it replaced, so taking it
as a withheld element could silently swap the gateway's key for a value it cannot open.
"""

from __future__ import annotations

from typing import Any, Protocol

from ledger.core.keypaths import KeyPath
from ledger.core.secret_refs import (
    Secret,
    SecretRef,
    parse_mask,
    refs_in,
)
from ledger.schema.introspect import (
    TypeNode,
    field_at,
    is_untyped,
    seals_by_name,
)
from ledger.schema.secret_policy import is_secret_name, secret_items, url_has_credential
from ledger.typed.masks import is_live, placeholder_ref

__all__ = ["holds_secret", "seal_list"]


class _Sealer(Protocol):
    def seal(self, plaintext: str) -> SecretRef: ...

    def fingerprint(self, plaintext: str) -> str: ...


class _Sealing:
    __slots__ = ("holds_live", "path", "pool", "sealed_any", "sealer")

    def __init__(self, current: Any, sealer: _Sealer, path: KeyPath) -> None:
        self.pool = {r.fp: r for r in refs_in(current)} if isinstance(current, list) else {}
        # whether the current list holds a secret the gateway can open (not a withheld or
        # destroyed placeholder): only then can a foreign mask lose one
        self.holds_live = any(is_live(r) for r in self.pool.values())
        self.path = path
        self.sealer = sealer
        self.sealed_any = False

    def ref(self, value: Any) -> Any:
        """The stored form of one secret element (a reference), or the value itself when
        it is only a `${VAR}` reference."""
        self.sealed_any = True
        if isinstance(value, Secret):
            value = value.given()
        if isinstance(value, SecretRef):
            return value
        mask = parse_mask(value)
        if mask is not None:
            return placeholder_ref(self.path, value, mask, self.pool, live=self.holds_live)
        fp = self.sealer.fingerprint(value)
        found = self.pool.get(fp)
        if found is None:
            found = self.pool[fp] = self.sealer.seal(value)
        return found

    def value(self, value: Any, node: TypeNode | None) -> Any:
        if isinstance(value, list):
            return self.items(value, node.item if node is not None and node.kind == "list"
                              else None)
        if isinstance(value, dict):
            return self.table(value, node)
        if isinstance(value, Secret | SecretRef) or (
                isinstance(value, str) and (url_has_credential(value)
                                            or parse_mask(value) is not None)):
            return self.ref(value)
        return value

    def items(self, values: list[Any], item: TypeNode | None) -> list[Any]:
        secret = set(secret_items(values))
        if item is not None and item.kind == "secret":
            secret.update(i for i, v in enumerate(values) if isinstance(v, str))
        return [self.ref(v) if i in secret else self.value(v, item)
                for i, v in enumerate(values)]

    def table(self, table: dict[str, Any], node: TypeNode | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, child in table.items():
            child_node = field_at((key,), node) if node is not None else None
            if isinstance(child, str) and (
                    (child_node is not None and child_node.kind == "secret")
                    or ((is_untyped(child_node) or seals_by_name(child_node))
                        and is_secret_name(key))):
                out[key] = self.ref(child)
            else:
                out[key] = self.value(child, child_node)
        return out


def seal_list(value: list[Any], current: Any, node: TypeNode | None, sealer: _Sealer,
              path: KeyPath = ()) -> tuple[list[Any], bool]:
    """`value` with its secrets sealed (references in their place), and whether it holds
    any. `node` is the schema type of the list (None where the schema does not type it),
    `current` the list stored there now (its references are reused by fingerprint),
    `path` where it stands (named when a stale mask is refused)."""
    sealing = _Sealing(current, sealer, path)
    out = sealing.items(value, node.item if node is not None and node.kind == "list" else None)
    return out, sealing.sealed_any


class _Probe:
    """A sealer that seals nothing: `holds_secret` only asks whether anything would be."""

    def seal(self, plaintext: str) -> SecretRef:
        return SecretRef(ref="probe", fp="probe")

    def fingerprint(self, plaintext: str) -> str:
        return "probe"


def holds_secret(path: KeyPath, value: Any, doc: str = "config") -> bool:
    """Whether a leaf that is not a secret by its path holds one by the policy's value
    rules: a URL with credentials, or a list with a secret inside."""
    if isinstance(value, str):
        return url_has_credential(value)
    if isinstance(value, list):
        return seal_list(value, None, field_at(path) if doc == "config" else None,
                         _Probe())[1]
    return False
