"""What reading a config file changed of its literal values, by path (list items by
index), as Moltis reads the file, for `check --file` to report; and the reading's
limits. Imports nothing: every command reads the config file as it starts (figure
i16a), and a TOML or JSON file never loads the YAML reader."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["MAX_NOTES", "MAX_YAML_NODES", "ReadNotes", "Reading"]

# YAML aliases share one node however often they are used; expanded into a document
# (as Moltis's serde_yaml and our normalization do), a few lines of anchors can name
# billions of values. Moltis's own config is a few hundred values.
MAX_YAML_NODES = 1_000_000

# At most this many paths per kind of note (a file of a million unquoted numbers in
# text fields needs one warning of each kind, not a million); the rest are counted
MAX_NOTES = 100

Path = tuple[str, ...]
# How the schema reads a YAML value at a path, and whether serde reads it buffered
# (`ledger.schema.introspect.value_reading`). The kind: "section" (a typed section),
# "table" (a typed map or array), "text" (a string or secret), "text?" (an optional
# one), "float", "scalar" (another typed field: a number, a bool, a choice), None (not
# typed: free-form, unknown). See `ledger.files.yaml_read`.
Reading = Callable[[Path], tuple[str | None, bool]]


class ReadNotes:
    """What reading a config file changed, by path (a plain class: dataclasses costs
    milliseconds to import)."""

    __slots__ = ("dates", "given_twice", "left_out", "non_finite", "non_finite_read",
                 "nulls", "refused_keys", "refused_texts", "texts")

    def __init__(self) -> None:
        self.nulls: list[Path] = []  # `null`s left out (JSON, YAML)
        self.non_finite: list[Path] = []  # inf/nan left out of a free-form value or key
        self.non_finite_read = False  # the file held an inf or nan (left out or refused)
        self.dates: list[Path] = []  # TOML dates and times, kept as their text
        # YAML (`ledger.files.yaml_read`):
        self.texts: list[Path] = []  # numbers and bools read as text, as serde reads them
        self.refused_texts: list[Path] = []  # ...where Moltis then refuses the number
        self.refused_keys: list[Path] = []  # number keys of a buffered table (refused)
        self.given_twice: list[Path] = []  # map keys given twice (the last entry kept)
        self.left_out = 0  # notes past MAX_NOTES of a kind

    def add(self, kind: list[Path], path: Path) -> None:
        if len(kind) < MAX_NOTES:
            kind.append(path)
        else:
            self.left_out += 1
