"""Issue 14, finding 4 (the parts outside backup/restore): every file the project writes
is created without following symbolic links, 0600 from the first byte, in a directory
checked for owner and world-writability; refusals name the path and the reason.

Traps: a link planted at an export file's name, at a bundle's name and at its temp
name, at a lock file, at the key file; a world-writable export directory; a directory
owned by another user.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ledger import errors
from ledger.engine.vault import KeySource
from ledger.files import safe_io
from tests.operator import cli

SECRET = "sk-SAFEFILES-3e9d1c7a"


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def ledger_with_secret(capsys):
    cli(capsys, "set", "server.port", "8080")
    cli(capsys, "set", "providers.openai.api_key", SECRET)
    return capsys


def test_export_replaces_planted_links_and_never_writes_through_them(tmp_path,
                                                                     ledger_with_secret):
    out_dir = tmp_path / "export"
    out_dir.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    elsewhere = tmp_path / "elsewhere.json"  # dangling: the keys would land here
    (out_dir / "moltis.toml").symlink_to(victim)
    (out_dir / "provider_keys.json").symlink_to(elsewhere)
    cli(ledger_with_secret, "export", "-o", str(out_dir), "--reveal-secrets")
    assert victim.read_text() == "precious\n"
    assert not elsewhere.exists()
    for name in ("moltis.toml", "provider_keys.json"):
        path = out_dir / name
        assert not path.is_symlink() and path.is_file()
        assert _mode(path) == 0o600
    assert SECRET in (out_dir / "moltis.toml").read_text()  # revealed, in the right file


def test_export_refuses_a_world_writable_directory(tmp_path, ledger_with_secret):
    out_dir = tmp_path / "open-to-all"
    out_dir.mkdir()
    out_dir.chmod(0o777)
    _, err = cli(ledger_with_secret, "export", "-o", str(out_dir), "--masked", code=1)
    assert str(out_dir) in err and "world-writable" in err
    assert list(out_dir.iterdir()) == []
    # with the sticky bit (like /tmp) nobody can replace another's file: allowed
    out_dir.chmod(0o1777)
    cli(ledger_with_secret, "export", "-o", str(out_dir), "--masked")
    assert _mode(out_dir / "moltis.toml") == 0o600


def test_a_directory_owned_by_another_user_is_refused(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another uid")
    os.chown(other, 4242, 4242)
    with pytest.raises(errors.UnsafePathError, match="belongs to uid 4242"):
        safe_io.check_directory(other)
    with pytest.raises(errors.UnsafePathError, match=str(other)):
        safe_io.write_private(other / "f", b"x")


def test_bundle_replaces_a_link_and_refuses_a_planted_temp_link(tmp_path, ledger_with_secret):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    target = tmp_path / "out.bundle"
    target.symlink_to(victim)
    cli(ledger_with_secret, "bundle", "-o", str(target), "--with-secrets")
    assert victim.read_text() == "precious\n"
    assert not target.is_symlink() and _mode(target) == 0o600
    # the temp name is predictable (pid): a link planted there is refused, not followed
    target.unlink()
    tmp = tmp_path / f".out.bundle.{os.getpid()}.tmp"
    tmp.symlink_to(victim)
    _, err = cli(ledger_with_secret, "bundle", "-o", str(target), code=1)
    assert "symbolic link" in err and str(tmp) in err
    assert victim.read_text() == "precious\n"


def test_create_private_is_0600_from_the_first_byte_and_never_follows(tmp_path):
    old = os.umask(0)
    try:
        fd = safe_io.create_private(tmp_path / "new")
        os.close(fd)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "new") == 0o600
    with pytest.raises(errors.UnsafePathError, match="already exists"):
        safe_io.create_private(tmp_path / "new")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(errors.UnsafePathError, match="symbolic link"):
        safe_io.create_private(tmp_path / "link")
    assert not (tmp_path / "nowhere").exists()


def test_lock_file_link_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    conf = tmp_path / "conf"
    conf.mkdir(mode=0o700)
    (conf / "moltis.toml.lock").symlink_to(victim)
    with pytest.raises(errors.UnsafePathError, match="lock"), safe_io.locked(
            conf / "moltis.toml", wait=False):
        pass
    assert victim.read_text() == "precious\n"


def test_file_store_write_into_a_world_writable_directory_is_refused(tmp_path):
    from ledger.stores.file_store import FileConfigStore
    from tests.conftest import run as arun

    conf = tmp_path / "conf"
    conf.mkdir()
    conf.chmod(0o777)
    store = FileConfigStore(conf / "moltis.toml")
    with pytest.raises(errors.UnsafePathError, match="world-writable"):
        arun(store.update_raw(lambda c: setattr(c.server, "port", 8080)))
    assert not (conf / "moltis.toml").exists()


def test_key_file_is_never_created_through_a_link(tmp_path):
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(mode=0o700)
    (keys_dir / "ledger.key").symlink_to(tmp_path / "stolen.key")
    source = KeySource(key_file=keys_dir / "ledger.key", env={})
    with pytest.raises(errors.UnsafePathError, match="symbolic link"):
        source.load(create=True)
    assert not (tmp_path / "stolen.key").exists()
    fresh = KeySource(key_file=tmp_path / "k2" / "ledger.key", env={})
    old = os.umask(0)
    try:
        assert fresh.load(create=True) is not None
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k2" / "ledger.key") == 0o600
