"""`moltis-ledger key rotate` killed (SIGKILL) at a chosen step, in a real process.

The steps are the rotation's own file-system operations, seen by a Python audit hook in
the worker process (`python -m tests.rotation_crash N`): each open for writing, rename
and unlink under the installation. At the N-th the worker kills itself before the
operation runs, so "killed at step N" means steps 1..N-1 happened and N did not
(a directory opened to fsync it counts as a step too). With $ROTATION_HOLD_AT=N
and $ROTATION_HOLD_DIR the worker is not killed but held before step N: it creates
`held` in that directory and waits until the test creates `go` there (`held_rotation`),
so a test can look at the installation in that exact state. No
library code is replaced: the worker runs the real CLI entry point. (The SQLite commit
is not a file-system call Python sees; it falls between the staged key's steps and the
first step after it, so killing at that first step is a kill right after the commit.)

`expect_rotation_finished` is what an operator does next and what must then hold:
`key rotate --resume` when the rotation was left part-way, after which every live
secret, every sealed migration backup and the ledger backup open with the one key
file, the old key is gone from disk (it opens nothing), and the ledger verifies."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.operator import Result, invoke

REPO = Path(__file__).resolve().parents[1]
SECRETS = {
    "providers.openai.api_key": "sk-ROTCRASH-openai-7c1d",
    "channels.telegram.bot1.token": "123456:ROTCRASH-telegram-88aa",
}
KEYS_FILE = {"anthropic": {"apiKey": "sk-ROTCRASH-anthropic-31f0"}}
ALL_SECRETS = {*SECRETS.values(), KEYS_FILE["anthropic"]["apiKey"]}
BACKED_UP = ALL_SECRETS - {SECRETS["channels.telegram.bot1.token"]}  # in the ledger backup
_TMP = re.compile(r"^\.(.+)\.[0-9a-f]{12}\.tmp$")


@dataclass
class Site:
    """An installation whose key is in a key file (the case `key rotate` replaces)."""

    root: Path

    @property
    def key_file(self) -> Path:
        return self.root / "keys" / "ledger.key"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def old_key_text(self) -> str:
        return (self.root / "old.key.for-the-test").read_text()

    ledger_key: str | None = None  # the key in $MOLTIS_LEDGER_KEY instead of the file

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTIS_")}
        if self.ledger_key is not None:
            env["MOLTIS_LEDGER_KEY"] = self.ledger_key
        env.update(MOLTIS_CONFIG_DIR=str(self.root / "config"),
                   MOLTIS_DATA_DIR=str(self.data_dir),
                   MOLTIS_LEDGER_KEY_FILE=str(self.key_file),
                   MOLTIS_LEDGER_ACTOR="rotation-test", COLUMNS="200", NO_COLOR="1",
                   PYTHONPATH=str(REPO))
        return env

    def cli(self, *args: str) -> Result:
        changes: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MOLTIS_")}
        changes.update({k: v for k, v in self.env().items() if k.startswith("MOLTIS_")})
        result = invoke(list(args), env=changes, cwd=self.root)
        for secret in ALL_SECRETS:
            assert secret not in result.err, f"{args}: a secret on stderr"
        assert "Traceback" not in result.err, result.err
        return result

    def ok(self, *args: str) -> Result:
        result = self.cli(*args)
        assert result.code == 0, (args, result)
        return result


def build_site(root: Path) -> Site:
    """Secrets in the ledger (from moltis.toml, provider_keys.json and `set`) and two
    folders of sealed migration backups, all under one key file."""
    site = Site(root)
    config = root / "config"
    config.mkdir(parents=True)
    (config / "moltis.toml").write_text(
        '[server]\nport = 8080\n\n[providers.openai]\nenabled = true\napi_key = "'
        + SECRETS["providers.openai.api_key"] + '"\n')
    (config / "provider_keys.json").write_text(json.dumps(KEYS_FILE))
    site.ok("migrate", "--reason", "import")
    site.ok("backup")  # a ledger backup (BACKED_UP): re-sealed by the rotation too
    site.ok("set", "channels.telegram.bot1.token",
            SECRETS["channels.telegram.bot1.token"])
    folders = sorted((site.data_dir / "backups").glob("migrate-*"))
    assert folders and any(p.suffix == ".sealed" for p in folders[0].iterdir())
    shutil.copytree(folders[0], folders[0].with_name(folders[0].name + "-second"))
    (root / "old.key.for-the-test").write_text(site.key_file.read_text())
    return site


def _worker_argv(kill_at: int, record: Path | None, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.rotation_crash", str(kill_at),
            str(record) if record else "", *args]


@functools.cache
def rotation_steps() -> list[tuple[str, str]]:
    """The steps of one complete rotation, in order: (kind, file name); found once per
    test session (a real run on a fresh installation)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return record_steps(build_site(Path(tmp) / "site"))


def record_steps(site: Site, *args: str) -> list[tuple[str, str]]:
    """The steps of `key rotate ARGS` run to the end on `site`."""
    record = site.root / "steps.json"
    proc = subprocess.run(_worker_argv(0, record, *args), env=site.env(), cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return [tuple(step) for step in json.loads(record.read_text())]  # type: ignore[misc]


def crash_rotation(site: Site, kill_at: int, *args: str) -> bool:
    """Run `key rotate ARGS` in a real process killed at step `kill_at`; True when it
    was killed (False: it finished first)."""
    proc = subprocess.run(_worker_argv(kill_at, None, *args), env=site.env(), cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode == -signal.SIGKILL:
        return True
    assert proc.returncode == 0, proc.stderr
    return False


@contextmanager
def held_rotation(site: Site, hold_at: int) -> Iterator[None]:
    """A real `key rotate` process held before its step `hold_at` (steps 1..hold_at-1
    done) for the duration of the block; afterwards it runs to the end (exit 0)."""
    hold_dir = site.root.with_name(site.root.name + "-hold")  # not a step: outside the site
    hold_dir.mkdir()
    env = {**site.env(), "ROTATION_HOLD_AT": str(hold_at), "ROTATION_HOLD_DIR": str(hold_dir)}
    proc = subprocess.Popen(_worker_argv(0, None), env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # a guard against a hang, not a measurement
        while not (hold_dir / "held").exists():
            assert proc.poll() is None, f"the rotation ended before step {hold_at}"
            assert time.monotonic() < deadline, "the rotation never reached its step"
            time.sleep(0.01)
        yield
    finally:
        (hold_dir / "go").touch()
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    shutil.rmtree(hold_dir)


def expect_rotation_finished(site: Site) -> str:
    """Finish as an operator would (the command the tool names), then check that
    nothing was lost and nothing is left behind. Returns "rotated" or "not rotated"."""
    from ledger import SqliteConfigStore
    from ledger.core.document import leaves
    from ledger.core.secret_refs import SecretRef
    from ledger.engine.vault import KeySource, parse_key
    from ledger.errors import SecretKeyError
    from ledger.ops.migrate import open_backup

    staged = site.key_file.with_name("ledger.key.new")
    if staged.exists():
        said = site.cli("check")
        assert "moltis-ledger key rotate --resume" in said.err, said
        site.ok("key", "rotate", "--resume")
    # the killed process's lock file may remain until the next rotation takes it
    left = sorted(set(os.listdir(site.key_file.parent)) - {"ledger.key.lock"})
    assert left == ["ledger-head.hwm", "ledger.key"], left
    key = parse_key(site.key_file.read_text(), "the key file")
    old_key = parse_key(site.old_key_text, "the old key")
    store = SqliteConfigStore(site.data_dir / "moltis.db",
                              keys=KeySource(key_file=site.key_file, env={}))
    try:
        state = store.ledger.head_state()
        opened = {store.ledger.vault.open_secret(value)
                  for doc in (state.config, state.keys) for _p, value in leaves(doc)
                  if isinstance(value, SecretRef)}
        assert opened == ALL_SECRETS
        assert store.ledger.verify().ok
    finally:
        store.ledger.close()
    folders = sorted((site.data_dir / "backups").glob("migrate-*"))
    assert len(folders) == 2
    for folder in folders:
        files = open_backup(folder, key)
        joined = b"".join(files.values())
        assert SECRETS["providers.openai.api_key"].encode() in joined
        assert KEYS_FILE["anthropic"]["apiKey"].encode() in joined
    assert ledger_backup_opens(site, key) == BACKED_UP
    if key == old_key:
        site.ok("key", "rotate", "--reason", "after a crash before the commit")
        assert sorted(os.listdir(site.key_file.parent)) == ["ledger-head.hwm", "ledger.key"]
        return "not rotated"
    for folder in folders:
        try:
            open_backup(folder, old_key)
        except SecretKeyError:
            continue
        raise AssertionError(f"{folder} still opens with the old key")
    try:
        ledger_backup_opens(site, old_key)
    except SecretKeyError:
        pass
    else:
        raise AssertionError("the old key still opens the ledger backup")
    old = SqliteConfigStore(site.data_dir / "moltis.db", keys=KeySource(key=old_key))
    try:
        ref = old.ledger.head_state().config["providers"]["openai"]["api_key"]
        try:
            old.ledger.vault.open_secret(ref)
        except SecretKeyError:
            pass
        else:
            raise AssertionError("the old key still opens a live secret")
    finally:
        old.ledger.close()
    site.ok("key", "rotate", "--reason", "again, after the crash")  # healthy again
    assert sorted(os.listdir(site.key_file.parent)) == ["ledger-head.hwm", "ledger.key"]
    return "rotated"


def ledger_backup_opens(site: Site, key: bytes) -> set[str]:
    """Every sealed value of the site's ledger backup, opened with `key` (read-only:
    the backup file is not changed); SecretKeyError when the key does not open it."""
    from ledger.backends.sqlite import SqliteBackend
    from ledger.core.secret_refs import SecretRef
    from ledger.engine.vault import KeySource, Vault

    (path,) = (site.data_dir / "backups").glob("ledger-*.db")
    backend = SqliteBackend(path, read_only=True)
    try:
        vault = Vault(backend, KeySource(key=key, env={}))
        return {vault.open_secret(SecretRef(ref=row.ref, fp="?"))
                for row in backend.secrets() if row.sealed is not None}
    finally:
        backend.close()


def _worker(kill_at: int, record: str, args: list[str]) -> None:
    root = str(Path(os.environ["MOLTIS_DATA_DIR"]).parent)
    steps: list[tuple[str, str]] = []
    hold_at = int(os.environ.get("ROTATION_HOLD_AT", "0"))
    hold_dir = Path(os.environ.get("ROTATION_HOLD_DIR", "."))

    def step(kind: str, path: Any) -> None:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return
        text = os.fsdecode(path)
        if not os.path.abspath(text).startswith(root + os.sep):
            return
        name = os.path.basename(text)
        match = _TMP.match(name)
        steps.append(("tmp", match.group(1)) if match else (kind, name))
        if len(steps) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if hold_at and len(steps) == hold_at:
            (hold_dir / "held").touch()
            while not (hold_dir / "go").exists():  # the test decides when it goes on
                time.sleep(0.01)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and len(args) >= 3 and isinstance(args[2], int):
            if args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                step("open", args[0])
            elif args[2] & os.O_DIRECTORY:  # opened to fsync a rename or a new file
                step("sync", args[0])
        elif event == "os.rename":
            step("rename", args[1])
        elif event == "os.remove":
            step("remove", args[0])

    from ledger.cli import run

    sys.addaudithook(hook)
    code = run(["key", "rotate", "--reason", "rotation crash test", *args])
    if record:
        Path(record).write_text(json.dumps(steps))
    sys.exit(code)


if __name__ == "__main__":
    _worker(int(sys.argv[1]), sys.argv[2], sys.argv[3:])


def concurrent_rotations(site: Site, count: int) -> list[int]:
    """`count` real `key rotate` processes started at once; their exit codes."""
    procs = [subprocess.Popen(_worker_argv(0, None), env=site.env(), cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(count)]
    codes = []
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
        assert proc.returncode in (0, 5), err
        codes.append(proc.returncode)
    return codes
