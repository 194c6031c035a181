"""FileConfigStore: Moltis's moltis.toml made safe — only the changed lines touched,
comments and unknown keys kept, a cross-process lock, atomic 0600 writes, layers that
never reach the file, and failures that leave the file as it was."""

from __future__ import annotations

import asyncio
import difflib
import errno
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from ledger import (
    ConfigValidationError,
    ConflictError,
    MoltisConfig,
    NotSupportedError,
    ParseError,
    ReadOnlyError,
    Secret,
    StoreError,
)
from ledger.files import safe_io as fileio
from ledger.schema.providers import ProviderConfig
from ledger.stores.file_store import FileConfigStore, discover_config_file
from tests.conftest import FIXTURES

REPO = Path(__file__).resolve().parents[1]


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def copy_fixture(fixtures: Path, tmp_path: Path, name: str) -> Path:
    """A writable copy (the fixtures themselves are never written)."""
    dst = tmp_path / "cfg" / "moltis.toml"
    dst.parent.mkdir(exist_ok=True)
    shutil.copyfile(fixtures / name, dst)
    dst.chmod(0o644)
    return dst


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def changed_lines(before: str, after: str) -> list[str]:
    return [line.rstrip("\n") for line in difflib.unified_diff(
        before.splitlines(True), after.splitlines(True), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------------------------
# only the changed lines


def test_one_key_change_is_a_one_line_diff_and_the_file_ends_0600(fixtures, tmp_path):
    path = copy_fixture(fixtures, tmp_path, "template.moltis.toml")
    before = path.read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    old_umask = os.umask(0o022)
    try:
        store = FileConfigStore(path)
        assert run(store.load_raw()).server.port == 13131
        commit = run(store.update_raw(lambda c: setattr(c.server, "port", 14000),
                                      actor="alice", reason="move the port"))
    finally:
        os.umask(old_umask)
    after = path.read_text(encoding="utf-8")
    old_line = next(ln for ln in before.splitlines() if ln.startswith("port = 13131"))
    assert changed_lines(before, after) == ["-" + old_line,
                                            "+" + old_line.replace("13131", "14000")]
    assert "# Port number (auto-generated" in after.splitlines()[before.splitlines().index(
        old_line)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # the lock file is removed after the write (its mode while held: test_small_safety)
    assert not path.with_name("moltis.toml.lock").exists()
    assert leftovers(path.parent) == []
    assert commit.appended and commit.paths == ["server.port"]
    assert commit.seq == run(store.head_seq()) != 0
    assert run(FileConfigStore(path).load_raw()).server.port == 14000


def _example_with_extras(fixtures: Path, tmp_path: Path) -> Path:
    path = copy_fixture(fixtures, tmp_path, "docs-example.moltis.toml")
    text = path.read_text(encoding="utf-8").replace(
        'bind = "0.0.0.0"\n',
        'bind = "0.0.0.0"\nexternal_url = "https://x.example"\n'
        'future_knob = "x"  # not in the schema\n')
    text += '\n[mystery]\nkept = [1, 2]  # mine\n'
    return write(path, text)


def test_add_keys_unset_keys_and_unknown_keys_survive(fixtures, tmp_path):
    path = _example_with_extras(fixtures, tmp_path)
    original = path.read_text(encoding="utf-8")
    store = FileConfigStore(path)

    def step(fn) -> list[str]:
        before = path.read_text(encoding="utf-8")
        run(store.update_raw(fn))
        return changed_lines(before, path.read_text(encoding="utf-8"))

    # a new key in an existing table goes after that table's last key
    assert step(lambda c: setattr(c.tools, "agent_max_auto_continues", 5)) == [
        "+agent_max_auto_continues = 5"]
    assert "agent_max_iterations = 25\nagent_max_auto_continues = 5\n" in path.read_text()
    # ... also in a table that is split over the file ([tools] ... [tools.exec.sandbox])
    assert step(lambda c: setattr(c.tools.exec.sandbox, "image", "img:1")) == [
        '+image = "img:1"']
    assert '"golang-go"]\nimage = "img:1"\n' in path.read_text()
    # a missing table is created as a [header]
    lines = step(lambda c: setattr(c.heartbeat, "every", "1h"))
    assert "+[heartbeat]" in lines and '+every = "1h"' in lines
    assert all(ln.startswith("+") for ln in lines)
    # a parent that exists only implicitly (via [tools.exec.sandbox]) gets its header,
    # before its sub-table
    lines = step(lambda c: setattr(c.tools.exec, "default_timeout_secs", 60))
    assert all(ln.startswith("+") for ln in lines) and "+[tools.exec]" in lines
    text = path.read_text()
    assert text.index("[tools.exec]\ndefault_timeout_secs = 60\n") < text.index(
        "[tools.exec.sandbox]")
    # an optional field set to None removes the line
    assert step(lambda c: setattr(c.server, "external_url", None)) == [
        '-external_url = "https://x.example"']
    # removing the last key of a table keeps the (now empty) table
    doc = run(store.raw_document())
    del doc["auth"]["disabled"]
    before = path.read_text()
    run(store.save_raw(doc))
    assert changed_lines(before, path.read_text()) == ["-disabled = false"]
    assert run(store.raw_document())["auth"] == {}
    assert "[auth]\n" in path.read_text()

    final = path.read_text(encoding="utf-8")
    assert 'future_knob = "x"  # not in the schema' in final
    assert "kept = [1, 2]  # mine" in final
    for line in original.splitlines():
        if line.lstrip().startswith("#"):
            assert line in final.splitlines()
    assert tomllib.loads(final) == run(store.raw_document())
    assert run(store.raw_document())["mystery"] == {"kept": [1, 2]}


def test_dotted_keys_stay_dotted_and_keep_their_comments(tmp_path):
    path = write(tmp_path / "moltis.toml",
                 'tools.exec.sandbox.image = "img:1"  # pinned\n\n[server]\nport = 1\n')
    store = FileConfigStore(path)
    run(store.update_raw(lambda c: setattr(c.tools.exec.sandbox, "container_prefix", "m")))
    run(store.update_raw(lambda c: setattr(c.tools.exec.sandbox, "image", "img:2")))
    assert path.read_text() == (
        'tools.exec.sandbox.image = "img:2"  # pinned\n'
        'tools.exec.sandbox.container_prefix = "m"\n\n[server]\nport = 1\n')


def test_an_implicit_table_emptied_by_an_unset_leaves_the_file(tmp_path):
    path = write(tmp_path / "moltis.toml",
                 '[server]\nport = 1\n\n[providers.openai]\nmodels = ["gpt-5"]\n')
    store = FileConfigStore(path)
    commit = run(store.update_raw(lambda c: c.providers.entries.pop("openai")))
    assert path.read_text() == "[server]\nport = 1\n\n"
    assert run(store.raw_document()) == {"server": {"port": 1}}
    assert [c.path for c in commit.changes] == [("providers", "openai"), ("providers",)]


def test_secrets_are_plaintext_in_the_file_and_masks_are_refused(tmp_path):
    path = tmp_path / "moltis.toml"
    store = FileConfigStore(path)

    def add(cfg: MoltisConfig) -> None:
        cfg.providers["openai"] = ProviderConfig(api_key=Secret("sk-file-0123456789"))

    run(store.update_raw(add))
    assert 'api_key = "sk-file-0123456789"' in path.read_text()
    key = run(store.load_raw()).providers["openai"].api_key
    assert isinstance(key, Secret) and key.reveal() == "sk-file-0123456789"
    before = path.read_bytes()

    def masked(cfg: MoltisConfig) -> None:
        cfg.providers["openai"].api_key = Secret("<secret fp:0123abcd>")

    with pytest.raises(ConfigValidationError, match=r"providers\.openai\.api_key") as info:
        run(store.update_raw(masked))
    assert info.value.path == "providers.openai.api_key"
    with pytest.raises(ConfigValidationError, match="masked"):
        run(store.save_raw({"providers": {"openai": {"api_key": "<secret fp:0123abcd>"}}}))
    assert path.read_bytes() == before


# ---------------------------------------------------------------------------------
# the cross-process lock

CHILD = r"""
import asyncio, os, sys, time
from pathlib import Path
from ledger.stores.file_store import FileConfigStore

path, ready, go = sys.argv[1:4]
store = FileConfigStore(path)
Path(ready).touch()
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.002)

def bump(cfg):
    cfg.tools.agent_timeout_secs += 1

async def main():
    for _ in range(100):
        await store.update_raw(bump, actor=f"worker-{os.getpid()}")

asyncio.run(main())
"""


def test_four_processes_lose_no_increment(tmp_path):
    path = write(tmp_path / "cfg" / "moltis.toml",
                 "# shared by four writers\n[tools]\nagent_timeout_secs = 1000  # start\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(r), str(go)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for r in ready]
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in ready):
            assert time.monotonic() < deadline, "the workers did not start"
            assert all(p.poll() is None for p in procs), procs[0].communicate()[1].decode()
            time.sleep(0.01)
        go.touch()  # all four start writing at the same moment
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert run(FileConfigStore(path).load_raw()).tools.agent_timeout_secs == 1400
    text = path.read_text()
    assert text == "# shared by four writers\n[tools]\nagent_timeout_secs = 1400  # start\n"
    assert leftovers(path.parent) == []


# ---------------------------------------------------------------------------------
# layers: environment, flags and ${VAR} never reach the file


def test_env_overrides_apply_and_never_reach_the_file(tmp_path):
    path = write(tmp_path / "moltis.toml", "[server]\nport = 13131\n\n[tools]\n"
                 "agent_timeout_secs = 300\n\n[identity]\nname = \"${AGENT_NAME}\"\n")
    store = FileConfigStore(path)
    env = {"MOLTIS_SERVER__PORT": "9000", "MOLTIS_TOOLS__AGENT_TIMEOUT_SECS": "notanumber",
           "AGENT_NAME": "Atlas"}
    eff = run(store.load_effective(env=env))
    assert eff.server.port == 9000
    assert eff.tools.agent_timeout_secs == 300
    assert eff.identity.name == "Atlas"
    meta = run(store.source_metadata(env=env))
    assert meta["server.port"].layer == "env"
    assert meta["server.port"].variable == "MOLTIS_SERVER__PORT"
    timeout = meta["tools.agent_timeout_secs"]
    assert timeout.layer == "file" and timeout.file == str(path)
    assert len(timeout.ignored) == 1
    assert "MOLTIS_TOOLS__AGENT_TIMEOUT_SECS" in timeout.ignored[0]
    assert "invalid value" in timeout.ignored[0]
    assert meta["tools.agent_max_iterations"].layer == "default"

    run(store.update_raw(lambda c: setattr(c.identity, "emoji", "fox")))
    run(store.save_raw(run(store.load_raw())))
    text = path.read_text()
    assert "9000" not in text and "Atlas" not in text and "notanumber" not in text
    assert 'name = "${AGENT_NAME}"' in text and "port = 13131" in text
    assert run(store.raw_document())["server"] == {"port": 13131}


def test_var_substitution_process_env_first_then_the_env_table(tmp_path):
    path = write(tmp_path / "moltis.toml",
                 '[env]\nAGENT_NAME = "FromTable"\nEMOJI = "owl"\n\n'
                 '[identity]\nname = "${AGENT_NAME}"\nemoji = "${EMOJI}"\n'
                 'theme = "${UNSET_VARIABLE}"\n')
    store = FileConfigStore(path)
    eff = run(store.load_effective(env={"AGENT_NAME": "FromEnv"}))
    assert (eff.identity.name, eff.identity.emoji) == ("FromEnv", "owl")
    assert eff.identity.theme == "${UNSET_VARIABLE}"  # unresolved names stay literal
    # the cache notices a changed variable
    assert run(store.load_effective(env={})).identity.name == "FromTable"
    meta = run(store.source_metadata(env={"AGENT_NAME": "FromEnv"}))
    assert meta["identity.name"].substituted == ("AGENT_NAME",)
    assert meta["identity.name"].layer == "file"
    assert run(store.load_raw()).identity.name == "${AGENT_NAME}"
    assert 'name = "${AGENT_NAME}"' in path.read_text()


# ---------------------------------------------------------------------------------
# failures leave the file as it was


def test_parse_errors_name_the_file(tmp_path):
    bad_toml = write(tmp_path / "a" / "moltis.toml", "[server\nport = 1\n")
    with pytest.raises(ParseError, match=r"moltis\.toml.*line 1") as info:
        run(FileConfigStore(bad_toml).load_raw())
    assert str(bad_toml) in str(info.value)
    bad_json = write(tmp_path / "b" / "moltis.json", '{"server": {"port": 1,}}')
    with pytest.raises(ParseError, match=r"moltis\.json.*line 1, column") as info:
        run(FileConfigStore(bad_json).load_raw())
    assert str(bad_json) in str(info.value)
    latin1 = tmp_path / "c" / "moltis.toml"
    latin1.parent.mkdir()
    latin1.write_bytes(b'[identity]\nname = "caf\xe9"\n')
    with pytest.raises(ParseError, match="UTF-8") as info:
        run(FileConfigStore(latin1).load_raw())
    assert str(latin1) in str(info.value)
    # a broken file is not overwritten by a write either
    with pytest.raises(ParseError):
        run(FileConfigStore(bad_toml).update_raw(lambda c: setattr(c.server, "port", 2)))
    assert bad_toml.read_text() == "[server\nport = 1\n"


def test_read_only_store_reads_but_refuses_writes(tmp_path):
    path = write(tmp_path / "moltis.toml", "[server]\nport = 1\n")
    store = FileConfigStore(path, read_only=True)
    assert run(store.load_raw()).server.port == 1
    with pytest.raises(ReadOnlyError, match=str(path)):
        run(store.update_raw(lambda c: setattr(c.server, "port", 2)))
    with pytest.raises(ReadOnlyError):
        run(store.save_raw({}))
    assert path.read_text() == "[server]\nport = 1\n"
    assert not path.with_name("moltis.toml.lock").exists()


def permissions_are_enforced(tmp_path: Path) -> bool:
    """False for root (or CAP_DAC_OVERRIDE), which writes into read-only directories."""
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o500)
    try:
        (probe / "x").touch()
    except PermissionError:
        return True
    finally:
        probe.chmod(0o700)
    return False


def test_unwritable_directory_or_file_raises_read_only_and_keeps_the_file(tmp_path):
    if not permissions_are_enforced(tmp_path):
        pytest.skip(f"running as uid {os.geteuid()} with permission checks bypassed (root): "
                    "a read-only directory cannot be simulated")
    folder = tmp_path / "cfg"
    path = write(folder / "moltis.toml", "[server]\nport = 1\n")
    folder.chmod(0o500)
    try:
        with pytest.raises(ReadOnlyError, match=str(path)):
            run(FileConfigStore(path).update_raw(lambda c: setattr(c.server, "port", 2)))
        assert path.read_text() == "[server]\nport = 1\n"
        assert leftovers(folder) == []
        # the lock file exists now; the temporary file cannot be created either
        folder.chmod(0o700)
        path.with_name("moltis.toml.lock").touch()
        folder.chmod(0o500)
        with pytest.raises(ReadOnlyError, match=str(path)):
            run(FileConfigStore(path).update_raw(lambda c: setattr(c.server, "port", 2)))
        assert path.read_text() == "[server]\nport = 1\n"
        assert leftovers(folder) == []
    finally:
        folder.chmod(0o700)
    # a read-only file in a writable directory is not replaced behind the owner's back
    path.chmod(0o400)
    with pytest.raises(ReadOnlyError, match="read-only"):
        run(FileConfigStore(path).update_raw(lambda c: setattr(c.server, "port", 2)))
    assert path.read_text() == "[server]\nport = 1\n"
    assert leftovers(folder) == []


def test_root_editing_a_users_config_leaves_it_theirs(tmp_path):
    path = write(tmp_path / "moltis.toml", "[server]\nport = 1\n")
    try:
        os.chown(path, 65534, 65534)
    except PermissionError:
        pytest.skip("only root can give a file to another user")
    run(FileConfigStore(path).update_raw(lambda c: setattr(c.server, "port", 2)))
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o600)


def test_disk_full_raises_store_error_and_keeps_the_file(tmp_path, monkeypatch):
    path = write(tmp_path / "moltis.toml", "[server]\nport = 1\n")
    before = path.read_bytes()

    def full(fd: int, data: bytes) -> None:
        os.write(fd, data[:3])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio, "_write_all", full)
    with pytest.raises(StoreError, match=r"disk is full") as info:
        run(FileConfigStore(path).update_raw(lambda c: setattr(c.server, "port", 2)))
    assert not isinstance(info.value, ReadOnlyError)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_fn_raising_or_an_invalid_value_leaves_the_file_byte_identical(tmp_path):
    path = write(tmp_path / "moltis.toml", "[server]\nport = 1  # keep\n")
    store = FileConfigStore(path)
    before = (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino)

    def boom(cfg: MoltisConfig) -> None:
        cfg.server.port = 2
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        run(store.update_raw(boom))
    with pytest.raises(ConfigValidationError, match=r"server\.port") as info:
        run(store.update_raw(lambda c: setattr(c.server, "port", "abc")))
    assert info.value.path == "server.port"
    with pytest.raises(ConfigValidationError, match=r"server\.port"):
        run(store.save_raw({"server": {"port": 70000}}))
    # nothing changed: no write at all
    assert not run(store.update_raw(lambda c: setattr(c.server, "port", 1))).appended
    assert (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino) == before
    assert leftovers(tmp_path) == []


def test_expected_seq_is_a_version_token_of_the_content(tmp_path):
    path = tmp_path / "moltis.toml"
    store = FileConfigStore(path)
    assert run(store.head_seq()) == 0
    first = run(store.update_raw(lambda c: setattr(c.server, "port", 1)))
    seen = run(store.head_seq())
    assert seen == first.seq != 0
    run(store.update_raw(lambda c: setattr(c.server, "port", 2)))
    with pytest.raises(ConflictError):
        run(store.update_raw(lambda c: setattr(c.server, "port", 3), expected_seq=seen))
    assert run(store.load_raw()).server.port == 2
    # another process's edit moves the token too
    path.write_text(path.read_text().replace("port = 2", "port = 5"))
    current = run(store.head_seq())
    with pytest.raises(ConflictError):
        run(store.update_raw(lambda c: setattr(c.server, "port", 3), expected_seq=seen))
    assert run(store.update_raw(lambda c: setattr(c.server, "port", 3),
                                expected_seq=current)).appended


# ---------------------------------------------------------------------------------
# JSON, discovery, cache, history, logging


def test_json_file_round_trip(tmp_path):
    path = write(tmp_path / "moltis.json",
                 '{"server": {"port": 1}, "zeta": {"unknown": true}, "identity": {"name": "A"}}')
    store = FileConfigStore(config_dir=tmp_path)
    assert store.path == path
    assert run(store.load_raw()).identity.name == "A"
    run(store.update_raw(lambda c: (setattr(c.server, "port", 2),
                                    setattr(c.tools, "agent_timeout_secs", 9))))
    text = path.read_text()
    assert text == ('{\n  "server": {\n    "port": 2\n  },\n  "zeta": {\n    "unknown": true\n'
                    '  },\n  "identity": {\n    "name": "A"\n  },\n  "tools": {\n'
                    '    "agent_timeout_secs": 9\n  }\n}\n')
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = run(FileConfigStore(path).load_raw())
    assert (cfg.server.port, cfg.tools.agent_timeout_secs) == (2, 9)
    assert not run(store.save_raw(cfg)).appended


def test_discovery_follows_moltis_rules(tmp_path, monkeypatch):
    one, two, cwd = tmp_path / "one", tmp_path / "two", tmp_path / "cwd"
    write(one / "moltis.json", "{}")
    write(one / "moltis.toml", "")
    assert discover_config_file(one) == one / "moltis.toml"
    assert discover_config_file(env={"MOLTIS_CONFIG_DIR": str(one)}) == one / "moltis.toml"
    write(cwd / "moltis.toml", "")
    monkeypatch.chdir(cwd)
    # an override searches only that directory
    assert discover_config_file(two) == two / "moltis.toml"
    # without one: ./ first, then ~/.config/moltis
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert discover_config_file(env={}) == cwd / "moltis.toml"
    (cwd / "moltis.toml").unlink()
    assert discover_config_file(env={}) == tmp_path / "home" / ".config" / "moltis" / "moltis.toml"
    # a missing file reads as empty and is created 0600 in a 0700 directory on write
    store = FileConfigStore(config_dir=two)
    assert run(store.raw_document()) == {}
    assert not two.exists()
    run(store.update_raw(lambda c: setattr(c.server, "port", 7)))
    assert (two / "moltis.toml").read_text() == "[server]\nport = 7\n"
    assert stat.S_IMODE(two.stat().st_mode) == 0o700
    assert stat.S_IMODE((two / "moltis.toml").stat().st_mode) == 0o600


def test_unchanged_file_is_not_parsed_again_but_an_edit_is_seen(tmp_path, monkeypatch):
    path = write(tmp_path / "moltis.toml", "[server]\nport = 1111\n")
    store = FileConfigStore(path)
    calls = []
    parse = FileConfigStore._parse
    monkeypatch.setattr(FileConfigStore, "_parse",
                        lambda self, data: calls.append(1) or parse(self, data))
    for _ in range(5):
        assert run(store.load_raw()).server.port == 1111
    assert len(calls) == 1
    # an in-place edit of the same size with the mtime put back is still seen
    st = path.stat()
    with open(path, "r+b") as f:
        f.write(b"[server]\nport = 2222\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run(store.load_raw()).server.port == 2222
    assert len(calls) == 2


def test_history_features_are_not_supported(tmp_path):
    store = FileConfigStore(tmp_path / "moltis.toml")
    with pytest.raises(NotSupportedError, match="migrate"):
        run(store.history())
    with pytest.raises(NotSupportedError):
        run(store.load_raw_at(1))
    with pytest.raises(NotSupportedError):
        run(store.verify())
    with pytest.raises(NotSupportedError):
        store.watch()


def test_symlinked_config_stays_a_symlink(tmp_path):
    real = write(tmp_path / "dotfiles" / "moltis.toml", "[server]\nport = 1\n")
    link = tmp_path / "cfg" / "moltis.toml"
    link.parent.mkdir()
    link.symlink_to(real)
    run(FileConfigStore(link).update_raw(lambda c: setattr(c.server, "port", 2)))
    assert link.is_symlink()
    assert real.read_text() == "[server]\nport = 2\n"


def test_one_log_line_per_write_without_values(tmp_path, caplog, capsys):
    store = FileConfigStore(tmp_path / "moltis.toml")

    def add(cfg: MoltisConfig) -> None:
        cfg.providers["openai"] = ProviderConfig(api_key=Secret("sk-LOGTEST-secret"))

    with caplog.at_level(logging.INFO, logger="ledger"):
        run(store.update_raw(add, actor="alice", reason="add a key"))
        run(store.update_raw(add, actor="alice"))  # no change, no line
    lines = [r for r in caplog.records if r.name == "ledger.stores.file_store"]
    assert len(lines) == 1
    rec = lines[0]
    assert rec.actor == "alice" and rec.path == str(store.path)
    assert rec.paths == ["providers.openai.api_key"]
    assert "sk-LOGTEST" not in str(rec.__dict__)
    assert capsys.readouterr().out == ""
