"""Issue 14, finding 8: key handling. `check` warns on a key file wider than 0600; an
all-zero or short key is refused with a clear error; `key rotate` re-seals every live
secret under a new key in one transaction (a rotation event without key material,
chain intact, the old key opens nothing, shredded values stay shredded, fingerprints
stay), and an interrupted rotation is used by the next opener and finished by
`key rotate --resume` (real crashes: tests/test_key_handling.py)."""

from __future__ import annotations

import json
import os

import pytest

from ledger import SecretDestroyedError, SecretKeyError, SqliteConfigStore
from ledger.engine.vault import KeySource, parse_key
from tests.operator import cli

SECRET_A = "sk-ROTATE-A-1f2e3d4c"
SECRET_B = "sk-ROTATE-B-9a8b7c6d"


@pytest.mark.parametrize("text", ["00" * 32, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="])
def test_all_zero_key_is_refused(text):
    with pytest.raises(SecretKeyError, match="placeholder"):
        parse_key(text, "MOLTIS_LEDGER_KEY")


@pytest.mark.parametrize("text", ["abcd", "00" * 31, "not a key at all"])
def test_short_key_is_refused(text):
    with pytest.raises(SecretKeyError, match="32 bytes"):
        parse_key(text, "the key file")


def test_all_zero_key_in_the_environment_is_refused_before_sealing(capsys, monkeypatch):
    monkeypatch.setenv("MOLTIS_LEDGER_KEY", "00" * 32)
    _, err = cli(capsys, "set", "providers.openai.api_key", SECRET_A, code=1)
    assert "placeholder" in err and "MOLTIS_LEDGER_KEY" in err


def test_check_warns_on_a_key_file_wider_than_0600(capsys, key_file):
    cli(capsys, "set", "providers.openai.api_key", SECRET_A)
    assert key_file.is_file()
    _, err = cli(capsys, "check")
    assert "chmod 600" not in err
    key_file.chmod(0o644)
    out, err = cli(capsys, "check", "--json")
    assert "chmod 600" in err and str(key_file) in err
    assert json.loads(out)["warnings"]


def test_key_rotate_reseals_every_live_secret(capsys, key_file, tmp_path):
    cli(capsys, "set", "providers.openai.api_key", SECRET_A)
    cli(capsys, "set", "channels.telegram.bot1.token", SECRET_B)
    cli(capsys, "set", "providers.anthropic.api_key", "sk-SHREDDED-0000")
    cli(capsys, "shred", "--path", "providers.anthropic.api_key", "--yes")
    old_key = key_file.read_text()
    db = tmp_path / "data" / "moltis.db"
    before = SqliteConfigStore(db, keys=KeySource(key_file=key_file, env={}))
    fps = {ch.path: ch.secret.fp for ev in before.ledger.events() for ch in ev.changes
           if ch.secret is not None}
    rows_before = {r.ref: r.sealed for r in before.ledger.backend.secrets()}
    before.ledger.close()

    out, _err = cli(capsys, "key", "rotate", "--reason", "yearly")
    assert "re-sealed 2 secret value(s)" in out
    new_key = key_file.read_text()
    assert new_key != old_key and oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert not key_file.with_name("ledger.key.new").exists()

    store = SqliteConfigStore(db, keys=KeySource(key_file=key_file, env={}))
    ledger = store.ledger
    assert ledger.verify().ok
    rotation = next(ledger.events(descending=True, limit=1))
    assert not rotation.changes and rotation.reason == "yearly"
    assert old_key.strip() not in repr(rotation) and new_key.strip() not in repr(rotation)
    state = ledger.head_state()
    assert ledger.vault.open_secret(state.config["providers"]["openai"]["api_key"]) == SECRET_A
    eff = json.dumps(run_eff(store))
    assert SECRET_B in eff  # the gateway still gets the channel token
    rows_after = {r.ref: r.sealed for r in ledger.backend.secrets()}
    assert rows_after.keys() == rows_before.keys()
    for ref, sealed in rows_after.items():
        assert (sealed is None) == (rows_before[ref] is None)  # shredded stay shredded
        assert sealed is None or sealed != rows_before[ref]
    with pytest.raises(SecretDestroyedError):
        ledger.vault.open_secret(state.config["providers"]["anthropic"]["api_key"])
    # fingerprints are stable: setting the same value again records nothing
    commit = ledger.edit({("providers", "openai", "api_key"): SECRET_A})
    assert not commit.appended
    assert all(ch.secret.fp == fps[ch.path] for ev in ledger.events() for ch in ev.changes
               if ch.secret is not None and ch.path in fps)
    ledger.close()

    # the old key opens nothing any more
    old = SqliteConfigStore(db, keys=KeySource(key=parse_key(old_key, "old"), env={}))
    with pytest.raises(SecretKeyError):
        old.ledger.vault.open_secret(state.config["providers"]["openai"]["api_key"])
    old.ledger.close()
    out, _ = cli(capsys, "get", "providers.openai.api_key")
    assert out.startswith("<secret fp:")


def run_eff(store) -> dict:
    from ledger.ops.display import effective_document
    from tests.conftest import run as arun

    cfg = arun(store.load_effective(env={}))
    return {"token": cfg.channels.telegram["bot1"]["token"],
            "shown": effective_document(cfg)["server"]}


def test_an_interrupted_rotation_is_used_by_the_next_opener_and_finished_by_resume(
        capsys, key_file, tmp_path):
    """The commit happened but the new key was not moved into place yet."""
    from ledger.ops import keys as keys_mod

    cli(capsys, "set", "providers.openai.api_key", SECRET_A)
    db = tmp_path / "data" / "moltis.db"
    store = SqliteConfigStore(db, keys=KeySource(key_file=key_file, env={}))
    real_replace = os.replace
    calls = []

    def stop_before_move(src, dst):
        calls.append((src, dst))
        raise KeyboardInterrupt

    keys_mod.os.replace = stop_before_move  # type: ignore[attr-defined]
    try:
        with pytest.raises(KeyboardInterrupt):
            keys_mod.rotate_key(store.ledger, reason="stopped")
    finally:
        keys_mod.os.replace = real_replace  # type: ignore[attr-defined]
    store.ledger.close()
    assert calls and key_file.with_name("ledger.key.new").exists()
    out, _ = cli(capsys, "get", "providers.openai.api_key")  # opens with the staged key
    assert out.startswith("<secret fp:")
    fresh = SqliteConfigStore(db, keys=KeySource(key_file=key_file, env={}))
    ref = fresh.ledger.head_state().config["providers"]["openai"]["api_key"]
    assert fresh.ledger.vault.open_secret(ref) == SECRET_A
    fresh.ledger.close()
    # the old key stays until the rotation is finished (backups may still need it)
    assert key_file.with_name("ledger.key.new").exists()
    cli(capsys, "key", "rotate", "--resume")
    assert not key_file.with_name("ledger.key.new").exists()
    fresh = SqliteConfigStore(db, keys=KeySource(key_file=key_file, env={}))
    assert fresh.ledger.vault.open_secret(ref) == SECRET_A
    fresh.ledger.close()


def test_rotate_with_the_key_in_the_environment_needs_a_new_key_file(capsys, tmp_path,
                                                                     monkeypatch):
    cli(capsys, "set", "providers.openai.api_key", SECRET_A)
    _, err = cli(capsys, "key", "rotate", code=1)
    assert "--new-key-file" in err
    target = tmp_path / "new.key"
    _, err = cli(capsys, "key", "rotate", "--new-key-file", str(target))
    assert "install it" in err and oct(target.stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("MOLTIS_LEDGER_KEY", target.read_text().strip())
    _out, _ = cli(capsys, "export", "-o", str(tmp_path / "exp"), "--reveal-secrets")
    assert SECRET_A in (tmp_path / "exp" / "moltis.toml").read_text()


def test_export_reveal_says_where_the_key_is(capsys, key_file, tmp_path):
    cli(capsys, "set", "providers.openai.api_key", SECRET_A)
    _, err = cli(capsys, "export", "-o", str(tmp_path / "exp"), "--reveal-secrets")
    assert str(key_file) in err and "restore" in err


def test_rotation_on_every_ledger_backend(ledger_factory):
    """The re-seal runs in the backend's one write transaction (memory, SQLite and
    PostgreSQL alike); afterwards only the new key opens the secrets."""
    from ledger.core.secret_refs import SecretRef
    from ledger.engine.vault import ENV_KEY

    store = ledger_factory()
    ledger = store.ledger
    ledger.edit({("providers", "openai", "api_key"): SECRET_A,
                 ("channels", "slack", "ws", "bot_token"): SECRET_B})
    old_key = os.environ[ENV_KEY]
    commit, count = ledger.rotate_key(os.urandom(32), reason="rotate")
    assert count == 2 and commit.appended and ledger.verify().ok
    cfg = ledger.head_state().config
    ref = cfg["providers"]["openai"]["api_key"]
    assert isinstance(ref, SecretRef)
    assert ledger.vault.open_secret(ref) == SECRET_A
    ledger.vault.keys = KeySource(env={ENV_KEY: old_key})
    ledger.vault.forget_key()
    with pytest.raises(SecretKeyError):
        ledger.vault.open_secret(ref)


def test_rotation_reseals_migration_backups_and_the_head_mirror(capsys, key_file, tmp_path):
    """Backups sealed with the ledger key still open after a rotation (with the new key
    only), and the head mirror's sealed copies follow the new key too."""
    from ledger.engine.sealed_files import open_blob
    from ledger.ops.migrate import open_backup

    config_dir = tmp_path / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "moltis.toml").write_text('[server]\nport = 8080\n')
    (config_dir / "provider_keys.json").write_text(json.dumps({"openai": {"apiKey": SECRET_A}}))
    cli(capsys, "migrate", "--reason", "import")
    old_key = parse_key(key_file.read_text(), "old")
    folders = sorted((tmp_path / "data" / "backups").glob("migrate-*"))
    assert folders
    sealed_files = [p for f in folders for p in f.glob("*.sealed")]
    assert sealed_files
    mirror = tmp_path / "data" / "ledger-head.json"
    mirror_before = mirror.read_bytes() if mirror.exists() else None

    out, _ = cli(capsys, "key", "rotate")
    assert f"{len(sealed_files)} sealed backup file(s)" in out
    new_key = parse_key(key_file.read_text(), "new")
    for folder in folders:
        files = open_backup(folder, new_key)
        assert SECRET_A.encode() in files["provider_keys.json"]
        with pytest.raises(SecretKeyError):
            open_backup(folder, old_key)
    for path in sealed_files:
        with pytest.raises(SecretKeyError):
            open_blob(old_key, path.read_bytes(), path.name.removesuffix(".sealed"), str(path))
    if mirror_before is not None:
        assert mirror.read_bytes() != mirror_before  # rewritten after the rotation
