"""Review r25: `bundle --with-secrets` racing `key rotate` (and other writers) in real
processes, and this session's changes (a78d9a4: `log --since` to the second starts that
second; 8cf1666: `restore` copies the live ledger's `import.*` rows inside its turn).

Each test is a finding, marked xfail(strict=True) until it is fixed. The races are made
deterministic with SIGSTOP: the bundle process is stopped once its output file holds
its first bytes (the header and the first events are written, so it has read the head
and the meta rows), the other command runs to its end, then the bundle goes on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.migrated_site import SECRET, cli_process, site_env

# CLI processes racing each other on one ledger: run by .ci/run
pytestmark = pytest.mark.torture

WT = str(Path(__file__).resolve().parents[1])


def _big_site(tmp_path: Path, events: int = 3000) -> dict[str, str]:
    """A migrated ledger (SECRET sealed under $MOLTIS_LEDGER_KEY) with `events` more
    port changes, so that writing its bundle takes a while."""
    from ledger.backends.sqlite import SqliteBackend
    from ledger.core.keypaths import parse_path
    from ledger.engine.ledger import Ledger
    from ledger.engine.vault import KeySource

    env = {**site_env(tmp_path), "PYTHONPATH": WT, "HOME": str(tmp_path)}
    ledger = Ledger(SqliteBackend(tmp_path / "data" / "moltis.db", synchronous="NORMAL"),
                    keys=KeySource(key_file=tmp_path / "no.key",
                                   env={"MOLTIS_LEDGER_KEY": env["MOLTIS_LEDGER_KEY"]}))
    try:
        for port in range(2000, 2000 + events):
            ledger.edit({parse_path("server.port"): port}, actor="t")
    finally:
        ledger.close()
    return env


def _bundle_while(env: dict[str, str], out: Path, *other: str
                  ) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """`bundle --with-secrets -o out` in its own process, stopped (SIGSTOP) while it
    writes its events, `moltis-ledger OTHER` run to its end meanwhile, then the bundle
    resumed. Returns (bundle, other)."""
    for _ in range(3):
        out.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "ledger", "bundle", "--with-secrets",
                                 "-o", str(out)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        partial = out.with_name(f".{out.name}.{proc.pid}.tmp")
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if partial.stat().st_size > 0:
                        break
                except FileNotFoundError:
                    pass
                time.sleep(0.0005)
            os.kill(proc.pid, signal.SIGSTOP)
            stopped_at = partial.stat().st_size if partial.exists() else -1
            done = subprocess.run([sys.executable, "-m", "ledger", *other], env=env,
                                  capture_output=True, text=True, timeout=120, check=False)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        stdout, stderr = proc.communicate(timeout=120)
        made = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        if 0 < stopped_at < out.stat().st_size // 2:  # stopped among the events
            return made, done
    pytest.skip("could not stop the bundle while it wrote its events")


def _fresh(tmp_path: Path, name: str, key: str) -> dict[str, str]:
    site = tmp_path / name
    (site / "config").mkdir(parents=True)
    (site / "data").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTIS_")}
    env.update(MOLTIS_CONFIG_DIR=str(site / "config"), MOLTIS_DATA_DIR=str(site / "data"),
               MOLTIS_LEDGER_KEY=key, MOLTIS_LEDGER_ACTOR="tester@r25",
               MOLTIS_CONFIG_BACKEND="sqlite", PYTHONPATH=WT, HOME=str(site))
    return env


def _secret_opens(tmp_path: Path, old_key: str, *load: str) -> list[bool]:
    """For each of the rotated key (`new.key`) and `old_key`: a fresh site with that key
    where `moltis-ledger LOAD...` (import-bundle, restore) succeeded, and whether its
    export reveals SECRET there (sites where the load was refused are left out)."""
    opened = []
    new_key = (tmp_path / "new.key").read_text().strip()
    for name, key in (("new", new_key), ("old", old_key)):
        site = _fresh(tmp_path, name, key)
        if cli_process(site, *load).returncode != 0:
            continue
        out = tmp_path / f"export-{name}"
        exported = cli_process(site, "export", "-o", str(out), "--reveal-secrets")
        opened.append(exported.returncode == 0 and any(
            SECRET in p.read_text() for p in out.iterdir()))
    return opened


# ---------------------------------------------------------------------------------
# 1. bundle --with-secrets against key rotate


def test_a_bundle_written_while_the_key_rotates_imports_with_secrets_that_open(
        tmp_path: Path) -> None:
    """What I did: a migrated ledger holding providers.openai.api_key (key in
    $MOLTIS_LEDGER_KEY) and 3000 more events; `bundle --with-secrets -o b.bundle` in its
    own process, stopped (SIGSTOP) once its output held the header and first events;
    `key rotate --new-key-file new.key` in another process (exit 0); the bundle resumed
    (exit 0). Then `import-bundle b.bundle` into a fresh site with the new key, and
    into another with the old key, and `export -o DIR --reveal-secrets` there.
    What happened: the bundle holds the old key's key_check and head MAC (read with the
    head, before the rotation) but the secret rows as re-sealed under the new key (read
    after). With the new key the import is refused ("sealed with another ledger key");
    with the old key it imports, `verify` and `check` say ok, and every read of the
    secret fails ("does not open with the ledger key"): the value is in no key's reach.
    What should happen: the bundle is one state (its key check, MAC and sealed rows all
    of one key), so the import under that key succeeds and the secret opens; or the
    bundle fails instead of writing a file that verifies.
    Mechanism: ledger/ops/bundle.py write_bundle: `_served_head` (meta_items) and
    `backend.secrets()` are separate reads, no read transaction spans them."""
    env = _big_site(tmp_path)
    old_key = env["MOLTIS_LEDGER_KEY"]
    bundle = tmp_path / "b.bundle"
    made, rotated = _bundle_while(env, bundle, "key", "rotate", "--new-key-file",
                                  str(tmp_path / "new.key"))
    assert rotated.returncode == 0, rotated.stderr
    assert made.returncode == 0, made.stderr
    opened = _secret_opens(tmp_path, old_key, "import-bundle", str(bundle))
    assert opened and all(opened), opened


def test_a_bundle_written_while_a_secret_is_shredded_imports_and_verifies(
        tmp_path: Path) -> None:
    """What I did: as above, but the command run while the bundle was stopped was
    `shred --path providers.openai.api_key --yes` (exit 0, seq 3002); the bundle
    (exit 0) names head 3001. Then `import-bundle` into a fresh site with the same key.
    What happened: the bundle's secret line says `"shredded_seq": 3002, "sealed": null`
    (a seq past its last event; `read_bundle` checks only created_seq);
    `import-bundle` writes the ledger and then exits 3 "verification failed at seq
    3002: secret ... is marked shredded at seq 3002, but no shred event there destroys
    it (a faked shred)", and every later `verify` of that ledger fails the same way.
    What should happen: a bundle the writer exits 0 for imports and verifies (one
    state: the secret as of its head, or the head that includes the shred); at worst
    the bundle command fails, never a file that yields a ledger failing verify.
    Mechanism: ledger/ops/bundle.py write_bundle (the `created_seq > head.seq` filter
    covers rows made after the head, not rows shredded after it) and read_bundle (no
    check of shredded_seq against the last event)."""
    env = _big_site(tmp_path)
    bundle = tmp_path / "b.bundle"
    made, shred = _bundle_while(env, bundle, "shred", "--path", "providers.openai.api_key",
                                "--yes", "--reason", "leaked")
    assert shred.returncode == 0, shred.stderr
    assert made.returncode == 0, made.stderr
    site = _fresh(tmp_path, "dst", env["MOLTIS_LEDGER_KEY"])
    imported = cli_process(site, "import-bundle", str(bundle))
    verified = cli_process(site, "verify")
    assert (imported.returncode, verified.returncode) == (0, 0), \
        (imported.stderr, verified.stderr)


def test_the_head_a_bundle_prints_is_the_head_it_holds(tmp_path: Path) -> None:
    """What I did: `bundle --with-secrets -o b.bundle` stopped while writing its
    events, `set server.port 7777` run meanwhile (exit 0), the bundle resumed; then
    `verify-bundle b.bundle --expect-head HASH` with the hash the bundle printed.
    What happened: the bundle printed "wrote b.bundle: 3001 event(s), head seq 3002"
    and the hash of event 3002, which it does not hold; verify-bundle with that hash
    fails (exit 3), so an operator who records the printed hash to check the file later
    (README: "record the head hash elsewhere") finds a good bundle "truncated".
    What should happen: the printed head seq and hash (and --json's head_seq/head_hash)
    are those of the bundle's header, and verify-bundle --expect-head accepts them.
    Mechanism: ledger/cli/admin_cmds.py bundle: `head = ledger.backend.head()` read
    again after write_bundle, instead of the head write_bundle wrote."""
    env = _big_site(tmp_path)
    bundle = tmp_path / "b.bundle"
    made, wrote = _bundle_while(env, bundle, "set", "server.port", "7777")
    assert wrote.returncode == 0, wrote.stderr
    assert made.returncode == 0, made.stderr
    printed = made.stdout.split("head hash:")[1].split()[0]
    checked = cli_process(env, "verify-bundle", str(bundle), "--expect-head", printed)
    assert checked.returncode == 0, (made.stdout, checked.stdout, checked.stderr)


# ---------------------------------------------------------------------------------
# 2a. log --since to the second (a78d9a4)


def test_the_web_log_filter_since_a_printed_time_matches_log_since(tmp_path: Path) -> None:
    """What I did: a migrated ledger, `set server.port 2001` (seq 2); T = that event's
    time to the second as `log` and the web view print it ("2026-12-04 20:42:17Z");
    `log --json --since T --until T` in a process, and `GET /api/log?since=T&until=T`
    of the audit web view (`create_app` over the same ledger, a bearer token).
    What happened: the CLI lists seq 2 (since a78d9a4, --since to the second starts
    that second); the web view lists nothing, and `/?since=T` (the timeline page) leaves
    out every event of that second: the web filter still reads `since` as the state at
    the end of the second.
    What should happen: the web view's log filter is the CLI's `log` (its JSON mirrors
    it, tests/test_web.py test_json_mirrors_the_cli): the same events for the same
    bounds.
    Mechanism: ledger/web/library.py timeline: `resolve_ref(ledger, filt.since)`
    without `lower_bound=True` (iter_history has it)."""
    import json
    from datetime import datetime

    from ledger import open_store
    from ledger.web.app import create_app
    from tests.web_helpers import make_client

    env = site_env(tmp_path)
    assert cli_process(env, "set", "server.port", "2001").returncode == 0
    event = json.loads(cli_process(env, "--json", "log", "--limit", "1").stdout)["events"][0]
    when = datetime.fromisoformat(event["time"]).strftime("%Y-%m-%d %H:%M:%SZ")
    cli = json.loads(cli_process(env, "--json", "log", "--since", when, "--until",
                                 when).stdout)
    store = open_store(config_dir=env["MOLTIS_CONFIG_DIR"], data_dir=env["MOLTIS_DATA_DIR"],
                       env=env)
    try:
        app = create_app(store)
        app.state.auth.add_bearer_token("bearer-token-r25-0123456789abcdef", "r25")
        web = make_client(app).get(
            "/api/log", params={"since": when, "until": when},
            headers={"Authorization": "Bearer bearer-token-r25-0123456789abcdef"}).json()
    finally:
        store.ledger.close()
    assert [e["seq"] for e in cli["events"]][:1] == [event["seq"]], cli
    assert [e["seq"] for e in web["events"]] == [e["seq"] for e in cli["events"]], web


def test_diff_since_a_printed_time_shows_what_log_since_lists(tmp_path: Path) -> None:
    """What I did: a migrated ledger, `set server.port 2001` (the last event); T = its
    time to the second as `log` prints it; `log --since T --json` and `diff T --json`
    (from the state at T to the head), each in a process.
    What happened: `log --since T` lists the port change (a78d9a4: a lower bound to the
    second starts the second), `diff T` shows no change at all: the same text T names
    the state after that event for diff and the state before it for log. docs/cli.md
    still says "`--since` is exclusive (the changes made since that state)".
    What should happen: the changes `log --since T` lists are the ones `diff T` shows
    (both are "what changed since T"), or the docs say where they differ.
    Mechanism: ledger/engine/queries.py iter_history passes lower_bound=True;
    resolve_ref for diff's first REF (ledger/cli/base.py) does not."""
    import json
    from datetime import datetime

    env = site_env(tmp_path)
    assert cli_process(env, "set", "server.port", "2001").returncode == 0
    event = json.loads(cli_process(env, "--json", "log", "--limit", "1").stdout)["events"][0]
    when = datetime.fromisoformat(event["time"]).strftime("%Y-%m-%d %H:%M:%SZ")
    logged = json.loads(cli_process(env, "--json", "log", "--since", when).stdout)
    changed = cli_process(env, "--json", "diff", when)
    assert changed.returncode == 0, changed.stderr
    listed = {c["path"] for e in logged["events"] for c in e["changes"]}
    assert "server.port" in listed, logged
    assert "server.port" in changed.stdout, changed.stdout


def test_a_backup_written_while_the_key_rotates_restores_with_secrets_that_open(
        tmp_path: Path) -> None:
    """What I did: the ledger of the bundle test with 20000 more events; `backup -o
    saved.db` in its own process, stopped (SIGSTOP) once the copy's WAL passed 200 kB
    (it is appending the events, after reading the meta rows); `key rotate
    --new-key-file new.key` run to its end; the backup resumed (exit 0, "wrote
    saved.db ... keep [the key] with the backup"). Then `restore --force saved.db`
    into a fresh site with the new key, and one with the old key, and `export -o DIR
    --reveal-secrets`.
    What happened: with the new key the restore is refused (made under an older key);
    with the old key it restores and verifies, and the secret does not open
    ("does not open with the ledger key"): the backup holds the old key_check and the
    rows re-sealed under the new key.
    What should happen: a backup reported good restores, under one of the keys, with
    every secret opening.
    Mechanism: ledger/ops/transfer.py copy_ledger: `_meta_of(source)`, `source.read`,
    `source.secrets()` are separate reads of a live source (the same pattern as
    write_bundle; switch-backend's copy goes through it too)."""
    env = _big_site(tmp_path, 20000)
    saved = tmp_path / "saved.db"
    proc = subprocess.Popen([sys.executable, "-m", "ledger", "backup", "-o", str(saved)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wal = Path(f"{saved}-wal")
    try:
        while proc.poll() is None:
            with_size = wal.stat().st_size if wal.exists() else 0
            if with_size > 200_000:
                break
            time.sleep(0.0005)
        os.kill(proc.pid, signal.SIGSTOP)
        rotated = cli_process(env, "key", "rotate", "--new-key-file", str(tmp_path / "new.key"))
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    proc.communicate(timeout=120)
    assert rotated.returncode == 0, rotated.stderr
    assert proc.returncode == 0
    opened = _secret_opens(tmp_path, env["MOLTIS_LEDGER_KEY"], "restore", "--force",
                           str(saved))
    assert opened and all(opened), opened


# ---------------------------------------------------------------------------------
# 2b. restore and the live ledger's import.* rows (8cf1666)


@pytest.mark.parametrize("leaves", ["{not json", "5"])
def test_a_restore_repairs_a_ledger_whose_file_record_is_malformed(
        tmp_path: Path, leaves: str) -> None:
    """What I did: a migrated ledger, `backup -o saved.db`, `set server.port 2001`; then
    the live ledger's `import.config.leaves` row (the record of the file as last
    imported: input like any row) set to `{not json` (or `5`) with sqlite3; then
    `restore --force saved.db`, `get server.port`, `verify`, each in a process.
    What happened: every command, the restore and verify included, exits 1 with
    "unexpected JSONDecodeError" ("unexpected AttributeError: 'int' object has no
    attribute 'items'"): the repair path is shut by the row it would replace, and
    restore's `_keep_file_sync` copies the live `import.*` rows into the restored
    ledger as they are.
    What should happen: a malformed record means "no usable record" (as a malformed
    import.config.digest already does, tests/test_stored_digest_input.py): restore
    exits 0 and `get server.port` prints 13131, `verify` exits 0.
    Mechanism: ledger/cli/base.py State._pending_hand_edit (`json.loads(previous)`
    then ledger/ops/hand_edit.pending_hand_edit's `.items()`), run when any command
    opens the store; ledger/ops/backup.py _keep_file_sync copies the rows unchecked."""
    import sqlite3

    env = site_env(tmp_path)
    assert cli_process(env, "backup", "-o", str(tmp_path / "saved.db")).returncode == 0
    assert cli_process(env, "set", "server.port", "2001").returncode == 0
    db = sqlite3.connect(tmp_path / "data" / "moltis.db")
    db.execute("UPDATE ledger_meta SET value = ? WHERE key = 'import.config.leaves'",
               (leaves,))
    db.commit()
    db.close()
    restored = cli_process(env, "restore", "--force", str(tmp_path / "saved.db"))
    assert restored.returncode == 0, restored.stderr
    got = cli_process(env, "get", "server.port")
    assert (got.returncode, got.stdout.strip()) == (0, "13131"), got.stderr
    assert cli_process(env, "verify").returncode == 0
