"""Stored text that is decoded into bytes has one spelling (ledger/core/canonical.py).

Found by the tamper torture (LEDGER_TORTURE_SEED=999228, "head signature byte 25: 0x62
-> 0x42"): `bytes.fromhex` takes upper case, so a changed digit that decodes to the same
bytes must still be refused. Each stored text is decoded, encoded again and compared."""

from __future__ import annotations

import base64
import json

import pytest

from ledger import SqliteConfigStore
from ledger.backends.base import HEAD_MAC, HEAD_SIGNATURE
from ledger.core.canonical import b64_bytes, hex_bytes
from ledger.engine.integrity_keys import HeadMac, HeadSignature
from ledger.errors import ParseError
from ledger.ops.bundle import read_bundle, write_bundle
from tests.conftest import run

# three secrets one byte apart: at least one sealed value's base64 ends in padding
DOC = {"server": {"port": 13131},
       "providers": {"openai": {"api_key": "sk-canon-0001"},
                     "anthropic": {"api_key": "sk-canon-00012"},
                     "mistral": {"api_key": "sk-canon-000123"}}}
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def upper_one(text: str) -> str:
    """The first hex letter of `text`'s last field in upper case: the same bytes."""
    head, _, last = text.rpartition(" ")
    i = next(i for i, c in enumerate(last) if c in "abcdef")
    return f"{head} {last[:i]}{last[i].upper()}{last[i + 1:]}"


@pytest.mark.parametrize("text", ["AB", "ab cd", " ab", "abc", "0xab", "ab\n", 3, None])
def test_hex_has_one_spelling(text):
    with pytest.raises(ValueError, match="hash"):
        hex_bytes(text, "the hash")


def test_hex_size_is_checked():
    assert hex_bytes("00ff", "x", size=2) == b"\x00\xff"
    with pytest.raises(ValueError, match="2 bytes"):
        hex_bytes("00", "x", size=2)


@pytest.mark.parametrize("text", ["QR==", "QQ", "Q Q==", "QQ==\n", "-_8=", "QQ=="[:-1] + "é"])
def test_base64_has_one_spelling(text):
    with pytest.raises(ValueError, match="sealed"):
        b64_bytes(text, "the sealed value")


def test_base64_round_trips():
    for raw in (b"", b"A", b"\xff\xfe\xfd", bytes(range(256))):
        assert b64_bytes(base64.b64encode(raw).decode(), "x") == raw


def test_a_stored_head_signature_or_mac_with_an_upper_case_digit_is_refused(tmp_path):
    store = SqliteConfigStore(tmp_path / "l.db")
    try:
        run(store.save_raw(DOC, actor="setup", source="import"))
        backend = store.ledger.backend
        signature, mac = backend.get_meta(HEAD_SIGNATURE), backend.get_meta(HEAD_MAC)
        assert signature is not None and mac is not None
        assert HeadSignature.decode(signature).encode() == signature
        assert HeadMac.decode(mac).encode() == mac
        for decode, text in ((HeadSignature.decode, signature), (HeadMac.decode, mac)):
            changed = upper_one(text)
            assert changed != text
            with pytest.raises(ValueError, match="malformed"):
                decode(changed)
    finally:
        store.ledger.close()


def test_a_bundle_line_with_another_spelling_is_refused(tmp_path):
    store = SqliteConfigStore(tmp_path / "l.db")
    try:
        run(store.save_raw(DOC, actor="setup", source="import"))
        bundle = tmp_path / "b.jsonl"
        with open(bundle, "w", encoding="utf-8") as out:
            write_bundle(store.ledger, out, with_secrets=True)
    finally:
        store.ledger.close()
    assert read_bundle(bundle).records
    lines = bundle.read_text(encoding="utf-8").splitlines()
    n, event = next((n, json.loads(line)) for n, line in enumerate(lines)
                    if '"seq"' in line)
    event["hash"] = event["hash"].upper()
    changed = tmp_path / "changed.jsonl"
    changed.write_text("\n".join([*lines[:n], json.dumps(event), *lines[n + 1:]]) + "\n",
                       encoding="utf-8")
    with pytest.raises(ParseError, match="hash is not 32 bytes as lowercase hex"):
        read_bundle(changed)
    items = [(n, json.loads(line)) for n, line in enumerate(lines) if '"secret"' in line]
    padded = [(n, item) for n, item in items if str(item.get("sealed") or "").endswith("=")]
    assert padded, "no sealed value ends in padding: the test cannot spell one otherwise"
    n, secret = padded[0]
    text = secret["sealed"]
    last = len(text.rstrip("=")) - 1  # the last digit before the padding: its low bits
    bumped = ALPHABET[ALPHABET.index(text[last]) ^ 1]  # are unused, so this decodes the same
    secret["sealed"] = text[:last] + bumped + text[last + 1:]
    assert base64.b64decode(secret["sealed"], validate=True) == base64.b64decode(text)
    changed.write_text("\n".join([*lines[:n], json.dumps(secret), *lines[n + 1:]]) + "\n",
                       encoding="utf-8")
    with pytest.raises(ParseError, match="sealed value is not valid base64"):
        read_bundle(changed)
