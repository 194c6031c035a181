"""What a fresh process pays before its first answer (issue 16: i16a `get`, 6b open and
read in a fresh process). Checked by what is loaded or evaluated, never by time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import msgspec
import pytest

from ledger.core import constant_time
from ledger.engine.integrity_keys import IntegrityKeys, _hkdf
from ledger.schema import MoltisConfig
from ledger.schema.introspect import section_info


def _schema_classes() -> list[type[msgspec.Struct]]:
    seen: list[type[msgspec.Struct]] = []
    todo: list[type[msgspec.Struct]] = [MoltisConfig]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.append(cls)
        for fn, _flat in section_info(cls).positions:
            node = fn.node
            while node is not None:
                if node.cls is not None:
                    todo.append(node.cls)
                node = node.item
    return seen


def test_schema_annotations_are_evaluated_at_import_not_compiled_per_process() -> None:
    """String annotations (`from __future__ import annotations`) made msgspec and
    section_info compile ~1,700 of them in every process that read a typed config."""
    classes = _schema_classes()
    assert len(classes) > 50
    strings = [f"{cls.__module__}.{cls.__qualname__}.{name}" for cls in classes
               for name, ann in vars(cls).get("__annotations__", {}).items()
               if isinstance(ann, str)]
    assert not strings, f"string annotations in the schema: {strings[:5]}"


def test_section_info_types_are_those_typing_evaluates() -> None:
    """section_info takes msgspec's evaluated types: the same as get_type_hints."""
    for cls in _schema_classes():
        hints = typing.get_type_hints(cls, include_extras=True)
        for fn, _flat in section_info(cls).positions:
            assert fn.node.annotation == hints[fn.attr], (cls, fn.attr)


def test_the_public_key_is_the_raw_encoding_as_before() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = bytes(range(32))
    keys = IntegrityKeys(key)
    seed = _hkdf(key, b"moltis-config-ledger 2026-12 checkpoint signing v1")
    expected = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)
    assert keys.public == expected


def test_hkdf_is_cryptographys_hkdf_byte_for_byte() -> None:
    """The standard-library HKDF derives exactly what cryptography's did (every MAC,
    snapshot MAC and signing key of existing ledgers depends on it)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    for key in (bytes(32), bytes(range(32)), os.urandom(32), os.urandom(64), b"k"):
        for info in (b"", b"moltis-config-ledger 2026-12 snapshot mac v1",
                     b"moltis-config-ledger 2026-12 head mac v1",
                     b"moltis-config-ledger 2026-12 checkpoint signing v1"):
            expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                            info=info).derive(key)
            assert _hkdf(key, info) == expected
    # RFC 5869, test case 3 (no salt, no info): the first 32 bytes of its OKM
    assert _hkdf(bytes([0x0B] * 22), b"").hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d")


def test_constant_time_equal_is_compare_digest() -> None:
    import hmac

    for a, b in ((b"a" * 32, b"a" * 32), (b"a" * 32, b"b" * 32), ("abc", "abc"),
                 ("abc", "abd"), (b"", b""), (b"ab", b"abc")):
        assert constant_time.equal(a, b) == hmac.compare_digest(a, b)
    with pytest.raises(TypeError):
        constant_time.equal("abc", b"abc")  # type: ignore[arg-type]


PROBE = """
import asyncio, json, sys
from ledger import SqliteConfigStore
store = SqliteConfigStore(sys.argv[1])
cfg = asyncio.run(store.load_raw())
# what a trusted snapshot or the head mark needs on open (a short ledger has neither)
assert store.ledger.vault.integrity() is not None
store.ledger.close()
print(json.dumps({"port": cfg.server.port, "modules": sorted(sys.modules)}))
"""


def test_a_keyed_open_and_typed_read_loads_no_cryptography(tmp_path: Path) -> None:
    """The head MAC, snapshot MAC and head mark are checked with the ledger key (blake3
    and HKDF-SHA256), so a keyed read loads no cryptography: AES-GCM is made when a
    secret is first sealed or opened, the Ed25519 key when a head is signed or a
    signature checked."""
    from ledger import SqliteConfigStore
    from tests.conftest import run

    db = tmp_path / "l.db"
    store = SqliteConfigStore(db)
    run(store.save_raw({"server": {"port": 13131}}, actor="setup"))
    store.ledger.close()
    proc = subprocess.run([sys.executable, "-c", PROBE, str(db)], capture_output=True,
                          text=True, check=True, timeout=120, env=dict(os.environ))
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["port"] == 13131
    modules = set(doc["modules"])
    loaded = sorted(m for m in modules if m.startswith("cryptography"))
    assert not loaded, loaded
