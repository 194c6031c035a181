"""Secrets at rest and in flight: encryption, fingerprints, shredding, wrong keys and
redaction everywhere (database, WAL, logs, exceptions, exports)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat

import pytest

from ledger import (
    ConfigValidationError,
    MoltisConfig,
    Secret,
    SecretDestroyedError,
    SecretKeyError,
    SqliteConfigStore,
)
from ledger.ops.display import display_doc, event_json
from ledger.ops.export import export_documents
from ledger.schema.agents import McpServerConfig
from ledger.schema.providers import ProviderConfig
from tests.conftest import run

SECRETS = {
    "typed": "sk-TYPED-0f3a9c1e7b2d4a68",
    "edit": "sk-EDIT-91c4e2b8a7d35f06",
    "mapping": "sk-MAPPING-5d2e8f1a9c7b3e40",
    "provider": "sk-PROVIDER-7e1b3c9d5a2f8e64",
    "import": "sk-IMPORT-3a8f6d2c1e9b7a05",
    "env_table": "sk-ENVTABLE-c4d8e2a6f1b9357e",
    "mcp": "sk-MCPENV-a1b2c3d4e5f60718",
    "legacy": "sk-LEGACY-8b7a6c5d4e3f2a19",
}


def write_everywhere(store: SqliteConfigStore) -> None:
    def typed(cfg: MoltisConfig) -> None:
        cfg.providers["anthropic"] = ProviderConfig(api_key=Secret(SECRETS["typed"]))
        cfg.mcp.servers["files"] = McpServerConfig(command="npx",
                                                   env={"TOKEN": Secret(SECRETS["mcp"])})

    run(store.update_raw(typed, actor="alice", reason="typed write"))
    store.ledger.edit({("tools", "web", "search", "api_key"): SECRETS["edit"]}, actor="bob")
    doc = run(store.raw_document())
    doc["env"] = {"BRAVE_API_KEY": SECRETS["env_table"]}
    doc.setdefault("memory", {})["api_key"] = SECRETS["mapping"]
    run(store.save_raw(doc, actor="carol"))
    run(store.providers.set("openai", api_key=SECRETS["provider"], models=["gpt-5"],
                            actor="dave", reason="rotate"))
    run(store.providers.import_keys({
        "custom-acme": {"apiKey": SECRETS["import"], "baseUrl": "https://acme.example/v1"},
        "legacy-one": SECRETS["legacy"],
        "openai": {"apiKey": SECRETS["provider"], "models": ["gpt-5"]},
    }))


def assert_nowhere(blob: bytes | str, where: str) -> None:
    data = blob.encode() if isinstance(blob, str) else blob
    for name, secret in SECRETS.items():
        assert secret.encode() not in data, f"{name} secret found in {where}"


@pytest.mark.parametrize("key_from", ["env", "file"])
def test_no_secret_reaches_disk_logs_errors_or_exports(tmp_path, monkeypatch, caplog, key_from):
    if key_from == "file":
        monkeypatch.delenv("MOLTIS_LEDGER_KEY")
        key_file = tmp_path / "keys" / "ledger.key"
        monkeypatch.setenv("MOLTIS_LEDGER_KEY_FILE", str(key_file))
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG, logger="ledger"):
        write_everywhere(store)
        # errors raised next to secrets must not quote them
        for bad in (lambda c: setattr(c.server, "port", SECRETS["typed"]),
                    lambda c: setattr(c.chat, "message_queue_mode", SECRETS["edit"])):
            with pytest.raises(ConfigValidationError) as info:
                run(store.update_raw(bad))
            errors.append(str(info.value))
        try:
            store.ledger.edit({("server", "port"): SECRETS["mapping"]})
        except ConfigValidationError as err:
            errors.append(str(err))
        cfg = run(store.load_raw())
        assert cfg.providers["anthropic"].api_key.reveal() == SECRETS["typed"]
        assert cfg.mcp.servers["files"].env["TOKEN"].reveal() == SECRETS["mcp"]
        assert cfg.tools.web.search.api_key.reveal() == SECRETS["edit"]
        assert cfg.env["BRAVE_API_KEY"].reveal() == SECRETS["env_table"]
        keys = run(store.providers.list())
        assert keys["custom-acme"].api_key.reveal() == SECRETS["import"]
        assert keys["legacy-one"].api_key.reveal() == SECRETS["legacy"]
        exported = export_documents(store.ledger, store.ledger.head_state().seq)
        events = [event_json(e, store.ledger.vault) for e in store.ledger.events()]
    assert len(errors) == 3
    for name in ("moltis.db", "moltis.db-wal"):
        path = tmp_path / name
        if path.exists():
            assert_nowhere(path.read_bytes(), name)
    assert_nowhere("\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records), "logs")
    assert_nowhere("\n".join(errors), "exception messages")
    assert_nowhere(exported.config_text + exported.keys_text, "the default export")
    assert_nowhere(json.dumps(events), "event JSON")
    assert_nowhere(repr(cfg) + repr(keys), "repr")
    assert "<secret fp:" in exported.config_text
    if key_from == "file":
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700


def test_fingerprints_show_whether_a_key_changed_without_revealing_it(tmp_path):
    store = SqliteConfigStore(tmp_path / "l.db")
    for value in ("sk-one", "sk-two", "sk-one"):
        run(store.providers.set("openai", api_key=value))
    fps = [c.secret.fp for e in store.ledger.events() for c in e.changes
           if c.secret is not None]
    assert len(fps) == 3
    assert fps[0] == fps[2] != fps[1]
    # setting the same value again records nothing
    assert not run(store.providers.set("openai", api_key="sk-one")).appended


def test_shred_keeps_history_and_the_chain(tmp_path):
    store = SqliteConfigStore(tmp_path / "l.db")
    for i in range(3):
        run(store.update_raw(
            lambda c, i=i: c.providers.__setitem__("openai", ProviderConfig(
                api_key=Secret(f"sk-version-{i}"))),
            actor=f"admin{i}", reason=f"key v{i}"))
    first = next(store.ledger.events())  # the version set three versions ago
    ref = first.changes[0].secret
    assert ref is not None
    commit = store.ledger.shred([ref], paths=["providers.openai.api_key"], actor="security",
                                reason="leaked in a ticket")
    assert commit.appended
    assert store.ledger.verify().ok
    history = run(store.history(path="providers.openai"))
    assert [e.actor for e in history] == ["security", "admin2", "admin1", "admin0"]
    assert history[0].kind == "shred"
    assert history[0].reason == "leaked in a ticket"
    past = run(store.load_raw_at(first.seq))
    key = past.providers["openai"].api_key
    assert key.is_destroyed
    assert "destroyed" in key.masked()
    with pytest.raises(SecretDestroyedError):
        key.reveal()
    assert display_doc(store.ledger.state_at(first.seq).config,
                       store.ledger.vault)["providers"]["openai"]["api_key"].startswith(
        "<secret destroyed")
    # the current key is untouched
    assert run(store.load_raw()).providers["openai"].api_key.reveal() == "sk-version-2"
    # the sealed bytes left the database file and its WAL
    sealed = b"sk-version-0"
    for name in ("l.db", "l.db-wal"):
        path = tmp_path / name
        if path.exists():
            assert sealed not in path.read_bytes()
    assert store.ledger.backend.secret(ref.ref).sealed is None


def test_shred_by_fingerprint_finds_every_copy(tmp_path):
    store = SqliteConfigStore(tmp_path / "l.db")
    run(store.providers.set("openai", api_key="sk-leaked"))
    run(store.providers.set("openai", api_key="sk-fresh"))
    run(store.providers.set("openai", api_key="sk-leaked"))
    fp = next(c.secret.fp for e in store.ledger.events() for c in e.changes if c.secret)
    refs = store.ledger.refs_with_fingerprint(fp)
    assert len(refs) == 2
    store.ledger.shred(refs, actor="security", reason="leak")
    keys = run(store.providers.list())
    assert keys["openai"].api_key.is_destroyed
    assert store.ledger.verify().ok


def test_wrong_key_fails_only_when_a_secret_is_read(tmp_path, monkeypatch):
    path = tmp_path / "l.db"
    store = SqliteConfigStore(path)
    run(store.update_raw(lambda c: setattr(c.server, "port", 8080)))
    run(store.providers.set("openai", api_key="sk-right-key"))
    monkeypatch.setenv("MOLTIS_LEDGER_KEY", hashlib.blake2b(b"another key").hexdigest()[:64])
    other = SqliteConfigStore(path)
    cfg = run(other.load_raw())
    assert cfg.server.port == 8080
    entry = run(other.providers.get("openai"))
    with pytest.raises(SecretKeyError, match="does not match"):
        entry.api_key.reveal()
    # non-secret writes still work; secret writes refuse with the same clear error
    run(other.update_raw(lambda c: setattr(c.server, "port", 9090)))
    with pytest.raises(SecretKeyError):
        run(other.providers.set("openai", api_key="sk-another"))
    assert other.ledger.verify().ok


def test_missing_key_is_a_clear_error_and_never_silently_replaced(tmp_path, monkeypatch):
    path = tmp_path / "l.db"
    monkeypatch.delenv("MOLTIS_LEDGER_KEY")
    key_file = tmp_path / "cfg" / "ledger.key"
    monkeypatch.setenv("MOLTIS_LEDGER_KEY_FILE", str(key_file))
    store = SqliteConfigStore(path)
    run(store.providers.set("openai", api_key="sk-first"))
    assert key_file.exists()
    key_file.unlink()
    fresh = SqliteConfigStore(path)
    with pytest.raises(SecretKeyError, match="no ledger key"):
        run(fresh.providers.get("openai")).api_key.reveal()
    with pytest.raises(SecretKeyError):
        run(fresh.providers.set("openai", api_key="sk-second"))
    assert not key_file.exists()  # a new key is only made for a ledger with no secrets


def test_env_references_in_secret_fields_stay_readable(tmp_path):
    store = SqliteConfigStore(tmp_path / "l.db")
    run(store.save_raw({"providers": {"anthropic": {"api_key": "${ANTHROPIC_API_KEY}"}}}))
    change = next(store.ledger.events()).changes[0]
    assert change.secret is None
    assert change.value == "${ANTHROPIC_API_KEY}"
    eff = run(store.load_effective(env={"ANTHROPIC_API_KEY": "sk-from-env"}))
    assert eff.providers["anthropic"].api_key.reveal() == "sk-from-env"


def test_secret_repr_format_and_pickle():
    s = Secret("sk-abcdef")
    assert "sk-abc" not in repr(s)
    assert "sk-abc" not in f"{s}"
    assert "sk-abc" not in str(s)
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_provider_import_round_trip_both_shapes(tmp_path, fixtures_dir):
    sample = json.loads((fixtures_dir / "provider_keys.json").read_text())
    store = SqliteConfigStore(tmp_path / "l.db")
    run(store.providers.import_keys(sample))
    got = run(store.providers.list())
    assert set(got) == set(sample)
    for name, entry in sample.items():
        e = got[name]
        assert (e.api_key.reveal() if e.api_key else None) == entry.get("apiKey")
        base = e.base_url.reveal() if isinstance(e.base_url, Secret) else e.base_url
        assert base == entry.get("baseUrl")
        assert e.models == entry.get("models", [])
        assert e.display_name == entry.get("displayName")
    # phone_* reuse baseUrl for the auth token: it is sealed like a key
    assert isinstance(got["phone_twilio"].base_url, Secret)
    legacy = SqliteConfigStore(tmp_path / "legacy.db")
    run(legacy.providers.import_keys({"anthropic": "sk-legacy", "openai": {"model": "gpt-5"}}))
    lg = run(legacy.providers.list())
    assert lg["anthropic"].api_key.reveal() == "sk-legacy"
    assert lg["openai"].models == ["gpt-5"]


def test_effective_provider_view_follows_moltis(tmp_path):
    keys_file = tmp_path / "provider_keys.json"
    keys_file.write_text(json.dumps({"groq": {"apiKey": "sk-only-in-file"}}))
    store = SqliteConfigStore(tmp_path / "l.db")
    store.keys_file = keys_file
    run(store.save_raw({"providers": {"openai": {"base_url": "https://proxy.example/v1"}}}))
    run(store.providers.set("openai", api_key="sk-keystore",
                            base_url="https://api.openai.com/v1", models=["gpt-5"]))
    env = {"ANTHROPIC_API_KEY": "sk-anthropic-env",
           "MOLTIS_PROVIDERS__OPENAI__MODELS": '["gpt-5.5"]'}
    eff = run(store.providers.effective(env=env))
    openai = eff["openai"]
    assert openai.base_url == "https://proxy.example/v1"   # moltis.toml wins
    assert openai.sources["base_url"] == "config"
    assert openai.api_key.reveal() == "sk-keystore"        # the key store fills the gap
    assert openai.sources["api_key"] == "keys"
    assert openai.models == ["gpt-5.5"]                    # MOLTIS_* on top
    assert openai.sources["models"] == "env:MOLTIS_PROVIDERS__OPENAI__MODELS"
    assert eff["groq"].sources["api_key"] == "keys-file"   # not yet imported: still read
    assert eff["groq"].api_key.reveal() == "sk-only-in-file"
    # saving a key also enabled the provider in the config, in the same event
    last = store.ledger.event(store.ledger.head_state().seq)
    assert {(c.doc, c.path) for c in last.changes} >= {
        ("keys", ("openai", "apiKey")), ("config", ("providers", "openai", "enabled"))}
    run(store.providers.import_keys({"groq": {"apiKey": "sk-only-in-file"},
                                     "openai": {"apiKey": "sk-keystore"}}))
    assert run(store.providers.effective(env={}))["groq"].sources["api_key"] == "keys"


def test_key_file_is_private_whatever_the_umask(tmp_path, monkeypatch):
    monkeypatch.delenv("MOLTIS_LEDGER_KEY")
    key_file = tmp_path / "newdir" / "ledger.key"
    monkeypatch.setenv("MOLTIS_LEDGER_KEY_FILE", str(key_file))
    old = os.umask(0)
    try:
        store = SqliteConfigStore(tmp_path / "l.db")
        run(store.providers.set("openai", api_key="sk-x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
