"""The one rule for stored text that is decoded into bytes (hashes, MACs, signatures,
sealed values in hex or base64): it must be the single spelling this library writes.

`bytes.fromhex` takes upper case and spaces, and base64 has several texts for one value
(the unused low bits of the last digit; `b64decode` without `validate` skips any
character it does not know). A check that decodes first and compares bytes then
passes a stored text someone changed: a tampering that changes nothing it verifies,
and one that a byte-for-byte comparison of the stored text (a copy, a backup, a second
reader) would report as a difference. So each such text is decoded, encoded again, and
refused unless it comes back unchanged. Values an operator types (a key, --expect-head)
are input, not stored records, and keep their lenient parsers."""

from __future__ import annotations

import base64
import binascii

__all__ = ["b64_bytes", "hex_bytes"]


def hex_bytes(text: object, what: str, *, size: int | None = None) -> bytes:
    """The bytes of `text` in lowercase hex with no separators (ValueError naming
    `what` otherwise, or when it is not `size` bytes long)."""
    raw: bytes | None = None
    if isinstance(text, str):
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None or raw.hex() != text or (size is not None and len(raw) != size):
        length = "" if size is None else f"{size} bytes as "
        raise ValueError(f"{what} is not {length}lowercase hex in the one spelling this "
                         "library writes")
    return raw


def b64_bytes(text: object, what: str) -> bytes:
    """The bytes of `text` in standard, padded base64 as `base64.b64encode` spells them
    (ValueError naming `what` otherwise)."""
    raw: bytes | None = None
    if isinstance(text, str) and text.isascii():
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or base64.b64encode(raw).decode("ascii") != text:
        raise ValueError(f"{what} is not base64 in the one spelling this library writes")
    return raw
