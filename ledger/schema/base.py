"""The base struct of the schema and the bounded number types the sections share.

Schema conventions (other modules rely on them):

- Every struct subclasses `Section`; field names are the TOML keys (`msgspec.field(name=...)`
  when a key is not a Python identifier). Unknown keys are never forbidden: the raw
  document keeps them and a checker reports them, as `moltis config check` does.
- `__flatten__: ClassVar[str]` names the field that collects every other key of the table
  (Rust `#[serde(flatten)]`); `__aliases__: ClassVar[dict[str, str]]` maps legacy TOML keys
  to field names (Rust `#[serde(alias)]`). The raw -> typed conversion honours both.
- Secret values are typed `Secret` (or a map of `Secret`), so secrets are found by type.
- `X | None = None` means "absent": Moltis then applies its own built-in behaviour.
- A Rust `String` with documented values is typed `Annotated[str, choices(...)]`, not a
  `Literal`: Moltis loads any text there (and its `config check` may warn), so refusing
  other values would refuse configs Moltis runs with. `check` warns instead.
- A map of Rust `String`s that holds credentials under secret-shaped names though Moltis
  types it as plain text (a hook's `env`) has values `Annotated[str, sealed_by_name()]`:
  the ledger seals a value whose key's name looks secret (`API_TOKEN`, not `HOOK_LOG`),
  and the typed config (what the gateway gets) keeps the plain `str` Moltis expects.
- A number is bounded only by its Rust type (`u8` is 0..255); a narrower range it is
  meant to be in is `Annotated[..., expected(low, high)]`, which `check` reports on,
  for the same reason as `choices`.
"""


from typing import Annotated

import msgspec

__all__ = ["Fraction", "Percent", "Port", "PositiveInt", "Section", "UInt", "UInt8", "UInt32",
           "choices", "expected", "sealed_by_name"]


class Section(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Base of every Moltis configuration struct: keyword-only, defaults omitted on encode.

    `gc=False`: a config is a tree (its lists and dicts are still tracked), and leaving
    its ~100 structs out of the garbage collector makes building a copy ~12% cheaper."""


# Rust `u16` ports: 0 asks the OS (or Moltis, on first run) for a free port.
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
# Rust unsigned counters, sizes and durations: negative values fail to load in Moltis.
UInt = Annotated[int, msgspec.Meta(ge=0)]
UInt8 = Annotated[int, msgspec.Meta(ge=0, le=255)]
UInt32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]


def expected(low: float, high: float | None = None) -> msgspec.Meta:
    """The range a number is meant to be in, where its Rust type allows more: Moltis
    loads a value outside it (its `config check` warns, or calls it an error), so the
    ledger takes it too and `check` reports it (review r11: a range enforced here
    refused whole files Moltis loads). `high` None: no upper end."""
    return msgspec.Meta(extra={"expected": (low, high)})


# Rust `u32`/`u64` settings meant to be nonzero, `u8`/`u32` percentages, `f32`/`f64`
# fractions: the type bounds what loads, the range is `check`'s
PositiveInt = Annotated[int, msgspec.Meta(ge=0), expected(1)]
Percent = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1), expected(0, 100)]
Fraction = Annotated[float, expected(0.0, 1.0)]


def choices(*values: str) -> msgspec.Meta:
    """The documented values of a free-text field (see the module docstring)."""
    return msgspec.Meta(extra={"choices": values})


def sealed_by_name() -> msgspec.Meta:
    """Map values the ledger seals by their key's name (see the module docstring)."""
    return msgspec.Meta(extra={"sealed_by_name": True})
