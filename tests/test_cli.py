"""The operator CLI, end to end, on real files in tmp_path seeded from the Moltis fixtures.

Commands run in-process: `Cli.__call__` calls `ledger.cli.run(argv)` (the same entry
point as `moltis-ledger`, so exit codes and error printing are the real ones) inside
click's `CliRunner` isolation, which gives it its own stdin, stdout, stderr and
environment. A subprocess costs ~0.4 s of interpreter start-up per call; in-process a
call costs milliseconds. What only a real process can show runs as one, through
`Cli.process`: `python -m ledger` and the installed `moltis-ledger` script, exit codes
as the operating system sees them, stdout and stderr as separate pipes, a watcher in
another process, a lock held by another process.

Every call, either way, asserts that none of the seeded secrets appears on stdout or
stderr (only `export --reveal-secrets` files may hold them) and that no traceback was
printed. Each call sees MOLTIS_CONFIG_DIR / MOLTIS_DATA_DIR under tmp_path, a
MOLTIS_LEDGER_KEY, and no other MOLTIS_* variable.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import stat
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from blake3 import blake3

from tests.operator import Result, invoke

# Distinctive values that must never be printed by any command.
SECRET_TOML = "sk-CLI-TEST-SECRET-toml-4f1e2d"  # [providers.openai] api_key in moltis.toml
SECRET_KEYS = "sk-CLI-TEST-SECRET-keys-9a8b7c"  # openai.apiKey in provider_keys.json
SECRET_STDIN = "sk-CLI-TEST-SECRET-stdin-5e6f70"  # typed at `set ... -`
SECRET_PROVIDER = "sk-CLI-TEST-SECRET-prov-1d2c3b"  # typed at `providers set --api-key -`
SECRETS = (SECRET_TOML, SECRET_KEYS, SECRET_STDIN, SECRET_PROVIDER)


@dataclass
class Call:
    args: tuple[str, ...]
    code: int = 0
    input: str | None = None


class Cli:
    """`moltis-ledger` with an isolated Moltis installation under `root`."""

    def __init__(self, root: Path, key: str) -> None:
        self.root = root
        self.key = key
        self.config_dir = root / "config"
        self.data_dir = root / "data"
        self.db = self.data_dir / "moltis.db"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTIS_")}
        env.update(MOLTIS_CONFIG_DIR=str(self.config_dir), MOLTIS_DATA_DIR=str(self.data_dir),
                   MOLTIS_LEDGER_KEY=key, COLUMNS="200", NO_COLOR="1")
        self.env = env  # a subprocess's whole environment; in-process, the changes below

    def fork(self, name: str) -> Cli:
        """Another installation (own config and data dirs), same ledger key."""
        return Cli(self.root.parent / name, self.key)

    def _env_changes(self) -> dict[str, str | None]:
        changes: dict[str, str | None] = {
            k: None for k in os.environ if k.startswith("MOLTIS_") and k not in self.env}
        changes.update({k: v for k, v in self.env.items()
                        if k.startswith("MOLTIS_") or k in ("COLUMNS", "NO_COLOR")})
        return changes

    def __call__(self, *args: str, code: int = 0, input: str | None = None) -> Result:
        """One command, in this process."""
        result = invoke(list(args), input=input, env=self._env_changes(), cwd=self.root)
        return self._checked(args, result, code)

    def many(self, *calls: tuple[str, ...] | Call) -> list[Result]:
        """Several calls, in order (reads that the subprocess version ran concurrently)."""
        todo = [c if isinstance(c, Call) else Call(c) for c in calls]
        return [self(*c.args, code=c.code, input=c.input) for c in todo]

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ledger", *args]

    def process(self, *args: str, code: int = 0, input: str | None = None,
                argv: list[str] | None = None) -> Result:
        """One command as a real process (`python -m ledger`, or `argv`)."""
        proc = subprocess.run([*(argv or self.argv()), *args], env=self.env, input=input,
                              text=True, capture_output=True, timeout=60, cwd=self.root,
                              check=False)
        return self._checked(args, Result(proc.returncode, proc.stdout, proc.stderr), code)

    def processes(self, *calls: tuple[str, ...] | Call) -> list[Result]:
        """Independent real processes, run concurrently (start-up is what they cost)."""
        todo = [c if isinstance(c, Call) else Call(c) for c in calls]
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(
                lambda c: self.process(*c.args, code=c.code, input=c.input), todo))

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), env=self.env, text=True, cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    @staticmethod
    def _checked(args: tuple[str, ...], result: Result, code: int) -> Result:
        for secret in SECRETS:
            assert secret not in result.out, f"{args}: a secret on stdout"
            assert secret not in result.err, f"{args}: a secret on stderr"
        assert "Traceback" not in result.err, f"{args}: {result.err}"
        assert result.code == code, (
            f"{args}: exit {result.code}, expected {code}\n"
            f"stdout: {result.out}\nstderr: {result.err}")
        return result

    def head(self) -> int:
        return int(self("log", "--limit", "1", "--json").json()["head_seq"])


def seed(cli: Cli, fixtures: Path) -> None:
    """The docs example as moltis.toml (plus a secret) and the fixture key file with
    distinctive keys."""
    toml = (fixtures / "docs-example.moltis.toml").read_text(encoding="utf-8")
    toml += f'\n[providers.openai]\nenabled = true\napi_key = "{SECRET_TOML}"\n'
    (cli.config_dir / "moltis.toml").write_text(toml, encoding="utf-8")
    keys = json.loads((fixtures / "provider_keys.json").read_text(encoding="utf-8"))
    keys["openai"]["apiKey"] = SECRET_KEYS
    (cli.config_dir / "provider_keys.json").write_text(json.dumps(keys, indent=2),
                                                      encoding="utf-8")


@pytest.fixture
def cli(tmp_path: Path, fixtures_dir: Path) -> Cli:
    site = Cli(tmp_path / "site", secrets.token_hex(32))
    seed(site, fixtures_dir)
    return site


@pytest.fixture
def migrated(cli: Cli) -> Cli:
    cli("migrate", "--actor", "installer")
    return cli


# ---------------------------------------------------------------------------------
# migrate


def test_migrate_backup_idempotent_and_incremental(cli: Cli) -> None:
    originals = {name: (cli.config_dir / name).read_bytes()
                 for name in ("moltis.toml", "provider_keys.json")}
    preview = cli("migrate", "--dry-run", "--json").json()
    assert preview["dry_run"] and not preview["appended"] and preview["changes"]
    assert not cli.db.exists(), "a dry run must not create the ledger"

    first = cli("migrate", "--json").json()
    assert first["appended"] and first["seq"] == 1
    backup = Path(first["backup_dir"])
    assert backup.is_dir() and backup.parent == cli.data_dir / "backups"
    manifest = json.loads((backup / "manifest.json").read_text())
    for name, data in originals.items():  # secret-bearing files are sealed, not copied
        entry = manifest["files"][name]
        stored = (backup / entry["stored_as"]).read_bytes()
        assert entry["blake3"] == blake3(stored).hexdigest() and entry["sealed"]
        assert stored != data and SECRET_KEYS.encode() not in stored

    second = cli("migrate", "--json").json()
    assert not second["appended"] and second["backup_dir"] is None
    assert cli("migrate").out.startswith("nothing to import")
    assert cli.head() == 1

    # a value set in the ledger since, then a hand edit of another key in the file
    cli("set", "server.port", "9000", "--actor", "alice")
    toml = cli.config_dir / "moltis.toml"
    toml.write_text(toml.read_text().replace('name = "Atlas"', 'name = "Nova"'))
    dry = cli("migrate", "--dry-run", "--json").json()
    assert [(c["op"], c["path"]) for c in dry["changes"]] == [("set", "identity.name")]
    third = cli("migrate", "--json").json()
    assert third["appended"] and third["seq"] == 3
    assert [(c["path"], c["value"]) for c in third["changes"]] == [("identity.name", "Nova")]
    shown = cli("show", "--json").json()
    assert shown["identity"]["name"] == "Nova"
    assert shown["server"]["port"] == 9000, "migrate must not revert a ledger change"
    assert cli("log", "--limit", "1", "--json").json()["events"][0]["source"] == "import"


def test_template_fixture_checks_and_migrates(tmp_path: Path, fixtures_dir: Path) -> None:
    site = Cli(tmp_path / "tpl", secrets.token_hex(32))
    shutil.copy(fixtures_dir / "template.moltis.toml", site.config_dir / "moltis.toml")
    shutil.copy(fixtures_dir / "provider_keys.json", site.config_dir / "provider_keys.json")
    report = site("check", "--file", str(site.config_dir / "moltis.toml"), "--json").json()
    assert report["ok"], report
    site("migrate")
    expected = tomllib.loads((fixtures_dir / "template.moltis.toml").read_text())
    assert site("show", "--json").json() == expected
    assert site("verify", "--json").json()["ok"]


# ---------------------------------------------------------------------------------
# set / get / unset / check / show


def test_set_get_unset_check(migrated: Cli) -> None:
    cli = migrated
    out = cli("set", "server.port", "8080", "--actor", "alice", "--reason", "proxy").out
    assert "set server.port = 8080" in out
    assert cli("set", "server.port", "8080").out.startswith("server.port already has")
    cli("set", "identity.name", "1984", "--string")
    cli("set", "tools.exec.sandbox.packages", '["curl", "git"]')
    # a secret typed at the `-` prompt (piped here): stored, shown masked
    cli("set", "providers.openai.api_key", "-", input=SECRET_STDIN + "\n")
    (plain, got, name, packages, masked, eff, default, missing, has_default, check_ok,
     shown, shown_json, effective) = cli.many(
        ("get", "server.port"), ("get", "server.port", "--json"),
        ("get", "identity.name", "--json"), ("get", "tools.exec.sandbox.packages", "--json"),
        ("get", "providers.openai.api_key"),
        ("get", "server.port", "--effective", "--json"),
        ("get", "tools.agent_max_iterations", "--effective", "--json"),
        Call(("get", "server.bind_typo"), code=1),
        Call(("get", "server.http_request_logs"), code=1),
        ("check", "--json"), ("show",), ("show", "--json"), ("show", "--effective", "--json"))
    assert plain.out == "8080\n"
    assert got.json() == {"path": "server.port", "seq": 5, "value": 8080}
    assert name.json()["value"] == "1984"
    assert packages.json()["value"] == ["curl", "git"]
    assert masked.out.startswith("<secret fp:")
    # effective values: defaults, and the layer that won
    assert eff.json()["value"] == 8080 and eff.json()["source"]["layer"] == "ledger"
    assert eff.json()["source"]["actor"] == "alice"
    assert default.json()["value"] == 25
    assert "server.bind_typo: unknown key" in missing.err  # issue 15: not "not set"
    assert "--effective" in has_default.err
    assert check_ok.json()["ok"]
    assert shown.out.startswith("# moltis.toml as of ledger seq")
    assert tomllib.loads(shown.out) == shown_json.json()
    assert effective.json()["tools"]["agent_max_iterations"] == 25
    assert effective.json()["providers"]["openai"]["api_key"].startswith("<secret fp:")

    # -v: the library's INFO lines on stderr; stdout still holds only the JSON document
    logged = cli("-v", "--json", "unset", "server.port", "--reason", "default")
    assert logged.json()["appended"] and "appended" in logged.err
    assert "[info" in logged.err and "seq=" in logged.err
    assert "was not set" in cli("unset", "server.port").out
    warn = cli("set", "server.prot", "1", "--allow-unknown").err  # refused without it
    assert "server.prot is not a key Moltis knows" in warn
    gone, problems, table = cli.many(Call(("get", "server.port"), code=1),
                                     Call(("check", "--json"), code=1),
                                     Call(("check",), code=1))
    assert "server.port is not set" in gone.err
    assert [p["path"] for p in problems.json()["problems"]] == ["server.prot"]
    assert "server.prot" in table.out


def test_bad_input_names_it(migrated: Cli, tmp_path: Path) -> None:
    cli = migrated
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 1\n")
    results = cli.many(
        Call(("get", "a..b"), 1), Call(("set", "a..b", "1"), 1),
        Call(("show", "--at", "the day before"), 1), Call(("diff", "99"), 1),
        Call(("check", "--file", str(bad)), 1), Call(("lgo",), 2), Call(("show", "--bogus"), 2),
        Call(("verify", "--expect-head", "xyz"), 2), Call(("set", "server.port", "eighty"), 1),
        Call(("set", "identity.name", "true"), 1))
    expected = ["a..b", "a..b", "'the day before'", "seq 99", str(bad), "No such command 'lgo'",
                "--bogus", "--expect-head", "expected int", "--string"]
    for result, text in zip(results, expected, strict=True):
        assert text.lower() in result.err.lower(), (text, result.err)
    (cli.config_dir / "moltis.toml").write_text("port = = 1\n")
    assert "invalid TOML" in cli("migrate", code=1).err


def test_no_ledger_yet(cli: Cli) -> None:
    err = cli("show", code=1).err
    assert "no ledger at" in err and "migrate" in err
    assert not cli.db.exists()


# ---------------------------------------------------------------------------------
# history: log, diff, blame, rollback


def test_rollback_equals_past_show_and_is_logged(migrated: Cli) -> None:
    cli = migrated
    cli("set", "server.port", "8080", "--actor", "alice", "--reason", "proxy")
    cli("providers", "set", "openai", "--api-key", "-", input=SECRET_PROVIDER)
    target = 3
    show_at, keys_at = cli.many(("show", "--at", str(target), "--json"),
                                ("providers", "list", "--at", str(target), "--json"))
    cli("--actor", "bob", "set", "tools.agent_timeout_secs", "900")
    cli("unset", "auth")
    cli("providers", "remove", "ollama")
    cli("set", "providers.openai.api_key", "-", input=SECRET_STDIN)

    dry = cli("rollback", "--to", str(target), "--dry-run", "--json").json()
    assert dry["dry_run"] and not dry["appended"] and dry["changes"]
    cli("rollback", "--to", str(target), "--expected-seq", "1", code=4)
    assert cli.head() == target + 4, "neither a dry run nor a conflict appends"

    done = cli("rollback", "--to", str(target), "--actor", "ops", "--reason", "undo",
               "--json").json()
    assert done["appended"] and done["seq"] == target + 5
    show, keys, log, table = cli.many(("show", "--json"), ("providers", "list", "--json"),
                                      ("log", "--limit", "1", "--json"),
                                      ("log", "--limit", "1"))
    assert show.json() == show_at.json()
    assert keys.json() == keys_at.json()
    newest = log.json()["events"][0]
    assert (newest["source"], newest["actor"], newest["reason"], newest["rollback_to"]) == (
        "rollback", "ops", "undo", target)
    assert "ops" in table.out and "undo" in table.out and "rollback" in table.out
    assert "already equals" in cli("rollback", "--to", str(target)).out


def test_rollback_to_a_time_in_words_names_the_event_it_picked(migrated: Cli) -> None:
    cli = migrated
    cli("set", "server.port", "8080", "--actor", "alice", "--reason", "free 13131")
    dry = cli("rollback", "--to", "now", "--dry-run")
    assert "seq 2 (" in dry.out and "by alice: free 13131)" in dry.out
    assert "would change 0 path(s)" in dry.out
    # everything was written just now: yesterday is before the first event, an error
    # (seq 0, the empty ledger, only by name)
    dry = cli("rollback", "--to", "yesterday", "--dry-run", code=1)
    assert "before the first event" in dry.err
    assert cli.head() == 2, "a dry run appends nothing"


def test_log_diff_blame(migrated: Cli) -> None:
    cli = migrated
    cli("--actor", "alice", "--reason", "proxy", "set", "server.port", "8080")
    cli("set", "tools.agent_timeout_secs", "900", "--actor", "bob")
    cli("unset", "auth", "--actor", "bob")
    (log, alice, by_path, since, until, keys, table, diff, diff_text, diff_path, diff_keys,
     blame, blame_at, blame_text) = cli.many(
        ("log", "--json"), ("log", "--actor", "alice", "--json"),
        ("log", "--path", "server", "--json"), ("log", "--since", "2", "--json"),
        ("log", "--until", "-2", "--limit", "1", "--json"),
        ("log", "--path", "keys:openai", "--json"), ("log",),
        ("diff", "1", "--json"), ("diff", "-3"),  # a relative REF as the positional argument
        ("diff", "2", "3", "--path", "tools", "--json"), ("diff", "0", "1", "--json"),
        ("blame", "--json"), ("blame", "server", "--at", "1", "--json"),
        ("blame", "server.port"))

    def seqs(result: Result) -> list[int]:
        return [e["seq"] for e in result.json()["events"]]

    assert log.json()["head_seq"] == 4 and seqs(log) == [4, 3, 2, 1]
    assert seqs(alice) == [2]
    assert alice.json()["events"][0]["changes"] == [
        {"op": "set", "path": "server.port", "value": 8080}]
    assert seqs(by_path) == [2, 1]
    assert seqs(since) == [4, 3]
    assert seqs(until) == [2]
    assert seqs(keys) == [1]
    assert "proxy" in table.out and "alice" in table.out

    assert {(c["path"], c["kind"]) for c in diff.json()["changes"]} == {
        ("server.port", "changed"), ("tools.agent_timeout_secs", "changed"),
        ("auth.disabled", "removed")}
    assert "~ server.port: 13131 -> 8080" in diff_text.out
    assert "- auth.disabled = false" in diff_text.out
    assert diff_path.json()["changes"] == [
        {"doc": "config", "path": "tools.agent_timeout_secs", "kind": "changed",
         "old": 600, "new": 900}]
    openai_key = next(c for c in diff_keys.json()["changes"] if c["path"] == "openai.apiKey")
    assert openai_key["doc"] == "keys" and openai_key["new"].startswith("<secret fp:")

    entries = {e["path"]: e for e in blame.json()["entries"]}
    assert entries["server.port"]["seq"] == 2 and entries["server.port"]["actor"] == "alice"
    assert entries["server.bind"]["seq"] == 1
    assert "auth.disabled" not in entries
    assert {e["path"]: e["seq"] for e in blame_at.json()["entries"]} == {
        "server.port": 1, "server.bind": 1}
    assert "alice" in blame_text.out


# ---------------------------------------------------------------------------------
# export


def test_export_then_fresh_migrate_gives_the_same_show(migrated: Cli) -> None:
    cli = migrated
    cli("set", "server.port", "8080")
    cli("set", "providers.openai.api_key", "-", input=SECRET_STDIN)
    n = 3
    cli("set", "server.port", "9090")
    cli("providers", "set", "openai", "--api-key", "-", input=SECRET_PROVIDER)
    masked, revealed, json_dir = (cli.root / d for d in ("masked", "revealed", "as-json"))
    show_n, keys_n, printed, as_json, written, _, _, _ = cli.many(
        ("show", "--at", str(n), "--json"), ("providers", "list", "--at", str(n), "--json"),
        ("export", "--at", str(n)), ("export", "--at", str(n), "--json"),
        ("export", "--at", str(n), "-o", str(masked), "--json", "--masked"),
        ("export", "--at", str(n), "-o", str(revealed), "--reveal-secrets"),
        ("export", "--format", "json", "-o", str(json_dir), "--masked"),
        Call(("export", "--reveal-secrets"), code=2))  # never printed
    assert tomllib.loads(printed.out) == show_n.json()
    assert as_json.json()["seq"] == n and as_json.json()["config"] == show_n.json()
    for path in written.json()["files"]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    fresh = cli.fork("fresh")
    for name in ("moltis.toml", "provider_keys.json"):
        shutil.copy(masked / name, fresh.config_dir / name)
    fresh("migrate")
    show, keys = fresh.many(("show", "--json"), ("providers", "list", "--json"))
    assert show.json() == show_n.json()
    assert keys.json() == keys_n.json()

    # revealed: only in the files, which are 0600
    toml = (revealed / "moltis.toml").read_text()
    assert SECRET_STDIN in toml and SECRET_KEYS in (revealed / "provider_keys.json").read_text()
    assert stat.S_IMODE(os.stat(revealed / "moltis.toml").st_mode) == 0o600
    assert json.loads((json_dir / "moltis.json").read_text())["server"]["port"] == 9090


# ---------------------------------------------------------------------------------
# verification, bundles, backup and restore


def _drop_triggers(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db)
    for name in ("ledger_events_no_update", "ledger_events_no_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    return conn


def test_verify_detects_tampering_and_truncation(migrated: Cli) -> None:
    cli = migrated
    cli("set", "server.port", "8080")
    cli("set", "server.port", "8081")
    cli("set", "identity.name", "Nova")
    copy = cli.root / "copy.db"
    good, text, _ = cli.many(("verify", "--json"), ("verify",), ("backup", "-o", str(copy)))
    assert good.json()["ok"] and good.json()["head_seq"] == 4
    assert good.json()["first_bad_seq"] is None
    head = good.json()["head_hash"]
    assert head in text.out
    cli("verify", "--expect-head", head)

    # truncation: the last event removed from a copy; the signed head notices (and
    # --expect-head, even if the signature were removed too)
    with _drop_triggers(copy) as conn:
        conn.execute("DELETE FROM ledger_events WHERE seq = 4")
    conn.close()
    assert "truncated" in cli("--db", str(copy), "verify", code=3).err
    cut = cli("--db", str(copy), "verify", "--expect-head", head, code=3)
    assert "truncated" in cut.err and "seq 4" in cut.err

    # tampering: one byte of event 2 changed
    with _drop_triggers(cli.db) as conn:
        (payload,) = conn.execute("SELECT payload FROM ledger_events WHERE seq = 2").fetchone()
        assert b"8080" in payload
        conn.execute("UPDATE ledger_events SET payload = ? WHERE seq = 2",
                     (payload.replace(b"8080", b"8090"),))
    conn.close()
    tampered_copy = cli.root / "tampered.db"
    bad, report, _ = cli.many(Call(("verify",), 3), Call(("verify", "--json"), 3),
                              Call(("backup", "-o", str(tampered_copy)), 3))
    assert "seq 2" in bad.err and "changed" in bad.err
    assert not report.json()["ok"] and report.json()["first_bad_seq"] == 2
    # a backup of the tampered ledger is refused by restore (exit 3)
    other = cli.fork("other")
    assert "seq 2" in other("restore", str(tampered_copy), code=3).err


def test_bundle_backup_restore(migrated: Cli) -> None:
    cli = migrated
    cli("set", "server.port", "8080")
    cli("set", "providers.openai.api_key", "-", input=SECRET_STDIN)
    bundle = cli.root / "ledger.bundle"
    made = cli("bundle", "-o", str(bundle), "--with-secrets", "--json").json()
    assert made["events"] == 3 and stat.S_IMODE(os.stat(bundle).st_mode) == 0o600
    assert SECRET_STDIN not in bundle.read_text()

    # verify-bundle needs no database (none is created either)
    nowhere = cli.fork("nowhere")
    checked = nowhere("verify-bundle", str(bundle), "--expect-head", made["head_hash"],
                      "--json").json()
    assert checked["ok"] and checked["head_seq"] == 3
    assert not nowhere.db.exists()
    broken = cli.root / "broken.bundle"
    lines = bundle.read_text().splitlines()
    lines[2] = lines[2].replace('"actor":', '"actor":"mallory","x":', 1)
    broken.write_text("\n".join(lines) + "\n")
    assert "seq 2" in nowhere("verify-bundle", str(broken), code=3).err

    # import into an empty ledger: same history, same views, secrets still open
    copy = cli.fork("copy")
    copy("import-bundle", str(bundle))
    revealed = copy.root / "revealed"
    copy_show, copy_log, _, _ = copy.many(
        ("show", "--json"), ("log", "--json"),
        Call(("import-bundle", str(bundle)), 1),  # only into an empty ledger
        ("export", "-o", str(revealed), "--reveal-secrets"))
    saved = cli.root / "saved.db"
    show, log, backup = cli.many(("show", "--json"), ("log", "--json"),
                                 ("backup", "-o", str(saved), "--json"))
    # the same history, and the import's own event on top (its history starts there)
    imported, *copied = copy_log.json()["events"]
    assert imported["source"] == "import" and imported["seq"] == log.json()["head_seq"] + 1
    assert copy_show.json() == show.json() and copied == log.json()["events"]
    assert SECRET_STDIN in (revealed / "moltis.toml").read_text()

    # backup while the ledger lives on, then restore (refused without --force when it
    # would drop events)
    assert backup.json()["head_seq"] == 3
    cli("backup", "-o", str(saved), code=1)  # never overwrites
    at_backup = show.json()
    cli("set", "server.port", "9999")
    assert "--force" in cli("restore", str(saved), code=1).err
    # the backup's 3 events and the restore's own
    assert cli("restore", str(saved), "--force", "--json").json()["head_seq"] == 4
    after, _, rebuilt = cli.many(("show", "--json"),
                                 Call(("restore", str(cli.root / "missing.db")), 1),
                                 ("rebuild-snapshots", "--json"))
    assert after.json() == at_backup
    assert rebuilt.json()["head_seq"] == 4


# ---------------------------------------------------------------------------------
# every read command: one JSON document, no secret


def test_json_read_commands_print_one_document(migrated: Cli) -> None:
    cli = migrated
    cli("set", "server.port", "8080")
    cli("set", "providers.openai.api_key", "-", input=SECRET_STDIN)
    cli("providers", "set", "anthropic", "--api-key", "-", input=SECRET_PROVIDER)
    bundle = cli.root / "b.bundle"
    cli("bundle", "-o", str(bundle))
    reads = [
        ["show"], ["show", "--at", "1"], ["show", "--effective"], ["get", "server.port"],
        ["get", "providers.openai.api_key"], ["get", "providers", "--effective"],
        ["check"], ["log"], ["diff", "1"], ["diff", "0", "1"], ["blame"], ["export"],
        ["verify"], ["verify-bundle", str(bundle)], ["providers", "list"],
        ["providers", "get", "openai"], ["providers", "effective"],
        ["migrate", "--dry-run"], ["rollback", "--to", "1", "--dry-run"],
    ]
    # --json after the command, or (every third command) before it, as a global option
    forms = [("--json", *args) if n % 3 == 0 else (*args, "--json")
             for n, args in enumerate(reads)]
    docs = {form: result.json() for form, result in zip(forms, cli.many(*forms), strict=True)}
    for form, doc in docs.items():  # .json(): exactly one document, nothing after it
        assert isinstance(doc, dict), form
    # secrets show up as masks only (and Cli checks every output for the plaintext)
    keys = docs[("providers", "list", "--json")]
    assert keys["anthropic"]["apiKey"].startswith("<secret fp:")
    shown = docs[("--json", "show")]
    assert shown["providers"]["openai"]["api_key"].startswith("<secret")


# ---------------------------------------------------------------------------------
# exit codes 4 and 5, watch


def test_conflict_exits_4(migrated: Cli) -> None:
    cli = migrated
    cli("set", "server.port", "8080", "--expected-seq", "1")
    conflict, _, _, port = cli.many(
        Call(("set", "server.port", "8081", "--expected-seq", "1"), 4),
        Call(("unset", "server.port", "--expected-seq", "0"), 4),
        Call(("providers", "remove", "ollama", "--expected-seq", "5"), 4),
        ("get", "server.port"))
    assert "conflict" in conflict.err
    assert port.out == "8080\n"


def test_locked_or_read_only_exits_5(migrated: Cli) -> None:
    """A real lock: another process holds SQLite's write lock (BEGIN IMMEDIATE, as every
    ledger writer does) for longer than --busy-timeout. As root, chmod 0444 would not
    stop writes, so the read-only case uses --read-only (a read-only SQLite open)."""
    cli = migrated
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys\n"
         f"c = sqlite3.connect({str(cli.db)!r}, isolation_level=None)\n"
         "c.execute('BEGIN IMMEDIATE')\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        holder.stdout.close()
        err = cli("--busy-timeout", "0.2", "set", "server.port", "8080", code=5).err
        assert "locked by another writer" in err and "--busy-timeout" in err
        assert cli("get", "server.port").out == "13131\n"  # reads still work
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    cli("--busy-timeout", "0.2", "set", "server.port", "8080")
    assert "read-only" in cli("--read-only", "set", "server.port", "1", code=5).err
    cli("--read-only", "get", "server.port")


def test_watch_sees_sets_from_another_process(migrated: Cli) -> None:
    cli = migrated
    head = cli.head()
    watcher = cli.popen("watch", "--after", str(head), "--count", "2", "--interval", "0.05",
                        "--json")
    try:
        cli("set", "server.port", "8080", "--actor", "alice")
        cli("set", "providers.openai.api_key", "-", input=SECRET_STDIN)
        out, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in events] == [head + 1, head + 2]
    assert events[0]["actor"] == "alice"
    assert SECRET_STDIN not in out and events[1]["changes"][0]["value"].startswith("<secret")
    human = cli("watch", "--after", "0", "--count", "1").out
    assert human.startswith("seq 1 ") and "import" in human


# ---------------------------------------------------------------------------------
# providers and shred


def test_providers(migrated: Cli) -> None:
    cli = migrated
    cli("providers", "set", "custom-local", "--base-url", "http://127.0.0.1:8000/v1",
        "--models", "llama-3, qwen", "--display-name", "Local", "--reason", "lab box")
    set_key = cli("providers", "set", "anthropic", "--api-key", "-", "--json",
                  input=SECRET_PROVIDER).json()
    assert set_key["appended"]
    assert all("<secret fp:" in str(c.get("value")) for c in set_key["changes"]
               if c["path"].endswith("apiKey"))
    listed, got, eff, table = cli.many(
        ("providers", "list", "--json"), ("providers", "get", "custom-local", "--json"),
        ("providers", "effective", "--json"), ("providers", "list"))
    assert set(listed.json()) >= {"anthropic", "openai", "ollama", "phone_twilio"}
    assert listed.json()["openai"]["apiKey"].startswith("<secret fp:")
    assert got.json() == {"name": "custom-local", "baseUrl": "http://127.0.0.1:8000/v1",
                          "models": ["llama-3", "qwen"], "displayName": "Local"}
    assert eff.json()["anthropic"]["api_key"].startswith("<secret fp:")
    assert eff.json()["anthropic"]["sources"]["api_key"] == "keys"
    assert "custom-local" in table.out
    cli("providers", "remove", "custom-local")
    _, again = cli.many(Call(("providers", "get", "custom-local"), 1),
                        ("providers", "remove", "custom-local"))
    assert "nothing appended" in again.out


def test_shred_forgets_a_value_but_keeps_history(migrated: Cli) -> None:
    cli = migrated
    cli("set", "providers.openai.api_key", "-", input=SECRET_STDIN)
    before = cli.head()
    cli("set", "server.port", "8080")
    cli("set", "providers.openai.api_key", "-", input=SECRET_STDIN + "-new")
    cli("shred", "--path", "providers.openai.api_key", "--at", str(before), "--yes",
        "--reason", "leaked")
    past, now, refused = cli.many(("get", "providers.openai.api_key", "--at", str(before)),
                                  ("get", "providers.openai.api_key"),
                                  Call(("rollback", "--to", str(before)), 1))
    assert past.out.startswith("<secret destroyed")
    assert now.out.startswith("<secret fp:")
    assert "--leave-destroyed-unset" in refused.err
    done = cli("rollback", "--to", str(before), "--leave-destroyed-unset", "--json").json()
    assert done["left_unset"] == ["providers.openai.api_key"]
    verified, entry = cli.many(("verify", "--json"), ("providers", "get", "openai", "--json"))
    assert verified.json()["ok"]

    mask = entry.json()["apiKey"]
    fingerprint = mask.removeprefix("<secret fp:").removesuffix(">")
    shredded = cli("shred", "--fingerprint", fingerprint, "--yes", "--json").json()
    assert shredded["appended"]
    entry, log, _, _, asked = cli.many(
        ("providers", "get", "openai", "--json"), ("log", "--limit", "1", "--json"),
        Call(("shred", "--path", "keys:ollama.baseUrl", "--yes"), 1),  # not a secret
        Call(("shred", "--path", "x", "--fingerprint", "y"), 2),
        Call(("shred", "--fingerprint", fingerprint), 1, "n\n"))
    assert entry.json()["apiKey"].startswith("<secret destroyed")
    assert log.json()["events"][0]["kind"] == "shred"
    assert "aborted" in asked.err


# ---------------------------------------------------------------------------------
# what only a real process shows (the rest of this file runs in-process)


def test_python_m_ledger_and_the_installed_script_are_the_same_cli(cli: Cli) -> None:
    script = Path(sys.executable).parent / "moltis-ledger"
    assert script.is_file(), f"{script} is missing: `pip install -e .` installs it"
    module_version = cli.process("--version")
    script_version = cli.process("--version", argv=[str(script)])
    assert module_version.out == script_version.out
    assert module_version.out.startswith("moltis-ledger, version ")
    module_help = cli.process("--help")
    assert cli.process("--help", argv=[str(script)]).out == module_help.out
    # the in-process harness shows what a real process prints
    assert cli("--help").out == module_help.out


def test_exit_codes_through_a_real_process(migrated: Cli) -> None:
    cli = migrated
    cli("set", "server.port", "8080")
    usage, error, verify, conflict, read_only, ok = cli.processes(
        Call(("lgo",), 2), Call(("get", "server.bind_typo"), 1),
        Call(("verify", "--expect-head", "00" * 32), 3),
        Call(("set", "server.port", "1", "--expected-seq", "1"), 4),
        Call(("--read-only", "set", "server.port", "1"), 5), Call(("get", "server.port"), 0))
    for failed in (usage, error, verify, conflict, read_only):
        assert failed.out == "" and failed.err, "errors go to stderr only"
    assert "No such command 'lgo'" in usage.err and "conflict" in conflict.err
    assert ok.out == "8080\n" and ok.err == ""


def test_stdout_and_stderr_are_separate_pipes(migrated: Cli) -> None:
    """-v logs to stderr while stdout holds exactly the one JSON document."""
    cli = migrated
    logged = cli.process("-v", "--json", "set", "server.port", "8080", "--reason", "proxy")
    assert logged.json()["appended"] and logged.json()["seq"] == 2
    assert "[info" in logged.err and "seq=" in logged.err
    shown = cli.process("--json", "show")
    assert shown.json()["server"]["port"] == 8080 and shown.err == ""


# ---------------------------------------------------------------------------------
# help and the demo


def test_help_version_and_exit_codes_documented(cli: Cli) -> None:
    top, short, version, sub = cli.many(("--help",), ("-h",), ("--version",),
                                        ("providers", "set", "-h"))
    assert "Exit codes:" in top.out and "Example:" in top.out
    for code in ("0  ok", "3  verification failed", "4  conflict", "5  read-only or locked"):
        assert code in top.out
    assert short.out == top.out
    assert "moltis-ledger, version" in version.out
    assert "Example:" in sub.out


def test_demo_runs_to_completion(tmp_path: Path) -> None:
    site = Cli(tmp_path / "demo-site", secrets.token_hex(32))
    kept = tmp_path / "tour"
    result = site("demo", "--dir", str(kept))
    for step in ("$ moltis-ledger migrate", "backup:", "$ moltis-ledger log",
                 "$ moltis-ledger diff 1", "$ moltis-ledger blame server",
                 "rollback --to 3", "$ moltis-ledger show", "$ moltis-ledger export",
                 "providers set openai --api-key -", "$ moltis-ledger verify", "head hash:"):
        assert step in result.out, step
    assert "<secret fp:" in result.out
    for sample in ("sk-demo-1111", "sk-demo-2222", "sk-ant-demo"):
        assert sample not in result.out and sample not in result.err
    assert (kept / "data" / "moltis.db").exists() and (kept / "export" / "moltis.toml").exists()
    assert not site.db.exists(), "the demo must not touch the configured installation"


# ---------------------------------------------------------------------------------
# PostgreSQL: --db with a DSN, or Moltis's own settings


@pytest.mark.postgres
def test_postgres_dsn(tmp_path: Path, fixtures_dir: Path) -> None:
    from tests.conftest import PG_URL_VAR, _pg_url

    url = _pg_url()
    if not url or not url.startswith(("postgresql://", "postgres://")):
        pytest.skip(f"set {PG_URL_VAR}=postgresql://... to run the PostgreSQL tests")
    import psycopg

    name = f"cli_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = url.rsplit("/", 1)[0] + "/" + name
    try:
        site = Cli(tmp_path / "pg", secrets.token_hex(32))
        seed(site, fixtures_dir)
        assert "migrate" in site("--db", dsn, "show", code=1).err  # read-only: not created
        site("--db", dsn, "migrate")
        site("--db", dsn, "set", "server.port", "8080", "--actor", "alice")
        # without --db: Moltis's own settings name the PostgreSQL ledger
        site.env.update(MOLTIS_CONFIG_BACKEND="postgres", MOLTIS_CONFIG_DSN=dsn)
        site("providers", "set", "openai", "--api-key", "-", input=SECRET_PROVIDER)
        show, at_1, log, verify = site.many(("show", "--json"), ("show", "--at", "1", "--json"),
                                            ("log", "--json"), ("verify", "--json"))
        assert show.json()["server"]["port"] == 8080
        assert [e["actor"] for e in log.json()["events"]][1] == "alice"
        assert verify.json()["ok"] and verify.json()["head_seq"] == 3
        site("rollback", "--to", "1", "--reason", "undo")
        assert site("show", "--json").json() == at_1.json()
        site("set", "server.port", "1", "--expected-seq", "0", code=4)
        assert not site.db.exists(), "nothing went to the SQLite default"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
