"""Regression corpora: Moltis's own configuration data (copied into tests/fixtures/moltis).

* `upstream-docs/`: the 191 TOML blocks of Moltis's documentation. Every valid one
  migrates, exports (secrets revealed) and re-imports to the same effective config;
  `check` finds no error in any, and warns exactly about the keys Moltis's own schema
  does not know (listed below, so a regression in either direction shows).
* `provider-keys-shapes/`: the 5 key-file shapes of Moltis's key store tests; all import
  and survive the same round trip.

In-process on the in-memory ledger, so the whole corpus runs in a few seconds.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ledger.core.secret_refs import Secret
from ledger.engine.ledger import Ledger
from ledger.engine.vault import KeySource
from ledger.ops.display import display_doc
from ledger.ops.export import export_documents, write_export
from ledger.ops.migrate import migrate
from ledger.stores.key_file import read_keys_file
from ledger.stores.ledger_store import MemoryConfigStore
from ledger.typed.check import check
from ledger.typed.layers import effective_config
from projections.provider_view import keys_view

CORPUS = Path(__file__).parent / "fixtures" / "moltis"
DOCS = sorted((CORPUS / "upstream-docs").glob("*.toml"))
KEY_SHAPES = sorted((CORPUS / "provider-keys-shapes").glob("*.json"))

# Not valid TOML upstream either (Moltis cannot load them): refused, never imported.
INVALID_TOML = {"mcp__04.toml", "metrics-and-tracing__01.toml", "voice__01.toml",
                "whatsapp__01.toml"}

# Every `check` warning over the corpus, by file. Each key is unknown to Moltis's own
# schema (crates/config/src/validate/schema_map.rs), so Moltis's `config check` reports
# it too: doc snippets of other files (Cargo.toml, a package.json-ish block), keys the
# docs describe but the schema dropped (voice.tts.auto, ...), and snippets shown without
# their table header (`trusted_domains` belongs under [tools.exec.sandbox]).
EXPECTED_WARNINGS: dict[str, list[tuple[str, str]]] = {
    "hooks__02.toml": [("unknown-key", "requires")],
    "metrics-and-tracing__03.toml": [("unknown-key", "moltis-metrics")],
    "mobile-pwa__01.toml": [("unknown-key", "dependencies")],
    "security__05.toml": [("unknown-key", "cron.job")],
    "security__10.toml": [("unknown-key", "tools.exec.sandbox.enabled")],
    "trusted-network__02.toml": [("unknown-key", "trusted_domains")],
    "trusted-network__03.toml": [("unknown-key", "trusted_domains")],
    "trusted-network__04.toml": [("unknown-key", "trusted_domains")],
    "trusted-network__05.toml": [("unknown-key", "trusted_domains")],
    "voice__02.toml": [
        ("unknown-key", "voice.tts.auto"),
        ("unknown-key", "voice.tts.max_text_length"),
        ("unknown-key", "voice.tts.elevenlabs.stability"),
        ("unknown-key", "voice.tts.elevenlabs.similarity_boost"),
        ("unknown-key", "voice.tts.openai.speed"),
    ],
}


def _ledger() -> Ledger:
    return MemoryConfigStore(keys=KeySource(key=secrets.token_bytes(32))).ledger


def _reveal(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.reveal()
    raise NotImplementedError(type(value))


def _effective(ledger: Ledger) -> bytes:
    """The effective config with its secrets revealed (so a changed secret shows; the
    sealed references differ between two ledgers, the plaintext must not)."""
    doc = display_doc(ledger.head_state().config, ledger.vault, reveal=True)
    eff = effective_config(doc, env={}).config
    return msgspec.json.encode(eff, order="deterministic", enc_hook=_reveal)


def _round_trip(tmp_path: Path, config: Path | None, keys: Path | None) -> tuple[Ledger, Ledger]:
    first = _ledger()
    report = migrate(first, config_file=config, keys_file=keys, data_dir=tmp_path / "data")
    assert report.appended
    head = first.head_state().seq
    out = tmp_path / "export"
    write_export(export_documents(first, head, reveal=True), out)
    second = _ledger()
    migrate(second, config_file=out / "moltis.toml", keys_file=out / "provider_keys.json",
            data_dir=tmp_path / "data2")
    return first, second


def test_the_corpora_are_complete() -> None:
    assert len(DOCS) == 191
    assert len(KEY_SHAPES) == 5
    assert {p.name for p in DOCS} >= INVALID_TOML


def test_every_valid_docs_block_migrates_exports_and_reimports_the_same(tmp_path: Path) -> None:
    warnings: dict[str, list[tuple[str, str]]] = {}
    for n, path in enumerate(DOCS):
        if path.name in INVALID_TOML:
            continue
        work = tmp_path / str(n)
        first, second = _round_trip(work, path, None)
        assert _effective(first) == _effective(second), path.name
        a, b = first.head_state().config, second.head_state().config
        problems = check(a)
        errors = [p for p in problems if p.severity == "error"]
        assert errors == [], (path.name, errors)
        found = [(p.kind, p.path) for p in problems]
        if found:
            warnings[path.name] = found
        assert [(p.kind, p.path) for p in check(b)] == found, path.name
    assert warnings == EXPECTED_WARNINGS


@pytest.mark.parametrize("name", sorted(INVALID_TOML))
def test_invalid_toml_blocks_are_refused_with_the_line(tmp_path: Path, name: str) -> None:
    from ledger.errors import ParseError

    with pytest.raises(ParseError, match=rf"{name}: invalid TOML: .*line \d+"):
        migrate(_ledger(), config_file=CORPUS / "upstream-docs" / name, keys_file=None,
                data_dir=tmp_path)


@pytest.mark.parametrize("path", KEY_SHAPES, ids=lambda p: p.name.split("__")[0])
def test_every_key_file_shape_imports_and_round_trips(tmp_path: Path, path: Path) -> None:
    first, second = _round_trip(tmp_path, None, path)
    expected = read_keys_file(path)
    keys = {name: entry.api_key.reveal() if entry.api_key else None
            for name, entry in keys_view(first.head_state().keys, first.vault).items()}
    assert keys == {name: entry.get("apiKey") for name, entry in expected.items()}
    assert set(keys) == set(json.loads(path.read_text()))
    again = keys_view(second.head_state().keys, second.vault)
    for name, entry in keys_view(first.head_state().keys, first.vault).items():
        other = again[name]
        assert (other.api_key.reveal() if other.api_key else None) == (
            entry.api_key.reveal() if entry.api_key else None)
        assert (other.models, other.base_url, other.display_name) == (
            entry.models, entry.base_url, entry.display_name)
