"""Review r16: a new operator checking that the tool does what README.md, docs/cli.md
and every `--help` promise, on the Moltis fixtures (docs example, provider_keys.json),
with the CLI (and the gateway's `open_store()`) run as separate processes.

Each test is a finding, marked xfail(strict=True) until it is fixed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.migrated_site import cli_here

FIXTURES = Path(__file__).parent / "fixtures" / "moltis"
DOCS = Path(__file__).parent.parent / "docs"
KEY = "sk-r16-PLAINTEXT-0123456789abcdef"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTIS_")}
    env.update(MOLTIS_CONFIG_DIR=str(tmp_path / "config"), MOLTIS_DATA_DIR=str(tmp_path / "data"),
               MOLTIS_LEDGER_ACTOR="tester@r16", HOME=str(tmp_path / "home"))
    env.update(extra)
    return env


_cli = cli_here  # the CLI in this process: the same entry point, a fraction of the time


def _site(tmp_path: Path, toml: str | None = None, keys: bool = False) -> dict[str, str]:
    """A migrated installation: the docs example (or `toml`), optionally the sample
    provider_keys.json; the key file in the config dir, as an operator has it."""
    for name in ("config", "data", "home"):
        (tmp_path / name).mkdir()
    config = tmp_path / "config" / "moltis.toml"
    if toml is None:
        shutil.copy(FIXTURES / "docs-example.moltis.toml", config)
    else:
        config.write_text(toml, encoding="utf-8")
    if keys:
        shutil.copy(FIXTURES / "provider_keys.json", tmp_path / "config" / "provider_keys.json")
    env = _env(tmp_path)
    done = cli_here(env, "migrate")
    assert done.returncode == 0, done.stderr
    return env


def _gateway(env: dict[str, str], body: str) -> subprocess.CompletedProcess[str]:
    """README's "In a gateway process", run as written inside asyncio.run."""
    code = ("import asyncio\nfrom ledger import open_store\n"
            "async def main():\n    store = open_store()\n"
            "    cfg = await store.load_effective()\n"
            + "".join(f"    {line}\n" for line in body.splitlines())
            + "asyncio.run(main())\n")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


# ---------------------------------------------------------------------------------
# switch-backend and the one truth about which store the gateway reads

def test_switch_backend_sqlite_onto_the_ledger_in_use_keeps_its_values(tmp_path: Path) -> None:
    """Did: migrate the docs example (port 13131), `set server.port 8080`, then
    `switch-backend sqlite` (the gateway already reads that ledger). Happened: an event
    "the ledger made equal to the files" set server.port back to 13131, exit 0 and
    "proven": every change made through the ledger since the import was reverted to
    moltis.toml's old content. Should: the gateway already uses this ledger, so nothing
    changes (a no-op or a refusal); values changed in the ledger are never reverted."""
    env = _site(tmp_path)
    assert cli_here(env, "set", "server.port", "8080", "--reason", "proxy").returncode == 0
    _cli(env, "switch-backend", "sqlite")
    got = _cli(env, "get", "server.port")
    assert (got.returncode, got.stdout.strip()) == (0, "8080"), got.stderr
    served = _gateway(env, "print(cfg.server.port)")
    assert served.stdout.strip() == "8080", served.stderr[-2000:]


def test_the_not_the_gateway_warning_names_a_command_that_switches_to_this_ledger(
        tmp_path: Path) -> None:
    """Did: migrate, `bundle`, `--db other.db import-bundle` (the help's example), then
    `--db other.db get server.port`. Happened: stderr says "`moltis-ledger
    switch-backend sqlite` makes it use this one"; run as printed (no --db) it does not
    touch other.db, it remakes the gateway's own ledger from the files. Should: the
    suggested command, run as printed, makes the gateway read other.db."""
    env = _site(tmp_path, keys=True)
    bundle, other = tmp_path / "l.bundle", tmp_path / "other.db"
    assert cli_here(env, "bundle", "-o", str(bundle), "--with-secrets").returncode == 0
    assert cli_here(env, "--db", str(other), "import-bundle", str(bundle)).returncode == 0
    got = _cli(env, "--db", str(other), "get", "server.port")
    assert got.returncode == 0, got.stderr
    hint = re.search(r"`(moltis-ledger [^`]*switch-backend[^`]*)`", got.stderr)
    assert hint is not None, got.stderr
    args = shlex.split(hint.group(1))[1:]
    _cli(env, *args)
    after = _cli(env, "--db", str(other), "get", "server.port")
    assert after.returncode == 0, after.stderr
    assert "does not read this ledger" not in after.stderr, (args, after.stderr)


def test_the_effective_backend_is_the_one_the_gateway_runs_on(tmp_path: Path) -> None:
    """Did: migrate (moltis.toml now says backend = "sqlite"), then `get --effective
    config.backend` and, in a gateway, `(await open_store().load_effective()).config`.
    Happened: "file" (source: default) in both, while open_store() returned the SQLite
    store; with MOLTIS_CONFIG__BACKEND=file the effective view says "file" (from that
    variable) and open_store() still opens SQLite. Should: `--effective` "shows what the
    gateway runs with" (docs/cli.md, show/get): the backend open_store() uses."""
    env = _site(tmp_path)
    got = _cli(env, "get", "--effective", "config.backend")
    assert got.returncode == 0, got.stderr
    served = _gateway(env, "print(type(store).__name__, cfg.config.backend)")
    assert served.stdout.split()[0] == "SqliteConfigStore", served.stderr[-2000:]
    assert got.stdout.strip() == "sqlite"
    assert served.stdout.split()[1] == "sqlite"
    # a MOLTIS_CONFIG__* variable is not what open_store() reads: the store's own wins
    forced = _cli({**env, "MOLTIS_CONFIG__BACKEND": "file"}, "get", "--effective",
                  "config.backend")
    assert forced.stdout.strip() == "sqlite", forced.stderr


def test_a_file_backend_override_does_not_hand_the_gateway_a_mask_as_its_key(
        tmp_path: Path) -> None:
    """Did: migrate a moltis.toml holding `[providers.openai] api_key` (migrate masks it
    in the file), then start the README gateway with MOLTIS_CONFIG_BACKEND=file (the
    documented override, "wins"). Happened: open_store() returned the file store, no
    warning, and `cfg.providers.entries["openai"].api_key.reveal()` is the placeholder
    "<secret fp:…>", which the gateway would send to OpenAI. Should: an imported file is
    "never served in the ledger's place" (docs/cli.md): refuse (naming the ledger), or at
    least never give a mask placeholder as a secret's value."""
    env = _site(tmp_path, toml=f'[server]\nport = 13131\n\n[providers.openai]\n'
                               f'api_key = "{KEY}"\n')
    served = _gateway({**env, "MOLTIS_CONFIG_BACKEND": "file"},
                      'print(cfg.providers.entries["openai"].api_key.reveal())')
    if served.returncode == 0:
        assert not served.stdout.strip().startswith("<secret fp:"), served.stdout
    else:
        assert "ledger" in served.stderr, served.stderr[-2000:]


# ---------------------------------------------------------------------------------
# REF times as `log` prints them

def test_a_time_read_in_log_names_the_state_after_that_event(tmp_path: Path) -> None:
    """Did: migrate, `set server.port 8080`, read its time in `log --limit 1`
    (e.g. "2026-12-04 16:22:59Z"), then `get server.port --at "<that time>"` and
    `log --until "<that time>"`. Happened: the event was at 16:22:59.49, after
    16:22:59.000, so `--at` gave the state before it (13131, or "before the first
    event" when the import was in the same second) and `--until` left it out;
    `rollback --to` picks the earlier event the same way. Should: "Times are UTC, like
    the times log prints, so what you read is what you type": the time log shows for
    an event names a state that includes it."""
    env = _site(tmp_path)
    time.sleep(1.1)  # the import in an earlier second: the state before the set is 13131
    assert cli_here(env, "set", "server.port", "8080", "--reason", "proxy").returncode == 0
    log = _cli(env, "log", "--limit", "1")
    shown = re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z", log.stdout)
    assert shown is not None, log.stdout
    got = _cli(env, "get", "server.port", "--at", shown.group(0))
    assert (got.returncode, got.stdout.strip()) == (0, "8080"), got.stderr
    until = _cli(env, "--json", "log", "--until", shown.group(0))
    assert '"seq": 2' in until.stdout, until.stdout


# ---------------------------------------------------------------------------------
# two ledgers under one key (import-bundle's own example)

def test_an_imported_bundle_stays_readable_after_the_original_is_written(
        tmp_path: Path) -> None:
    """Did: migrate, `bundle -o l.bundle --with-secrets`, `--db new.db import-bundle
    l.bundle` (import-bundle --help's example), one more `set` on the gateway's ledger,
    then `--db new.db get server.port`. Happened: exit 3, "this ledger is not the history
    this key has seen ... the log was replaced or rewritten". Should: README says two
    ledgers sharing a key directory "protect only the last one written" (the older one
    is unprotected), not that a copy made by import-bundle is refused as tampered."""
    env = _site(tmp_path)
    bundle, new = tmp_path / "l.bundle", tmp_path / "new.db"
    assert cli_here(env, "bundle", "-o", str(bundle), "--with-secrets").returncode == 0
    assert cli_here(env, "--db", str(new), "import-bundle", str(bundle)).returncode == 0
    assert _cli(env, "set", "server.port", "8081").returncode == 0
    got = _cli(env, "--db", str(new), "get", "server.port")
    assert (got.returncode, got.stdout.strip()) == (0, "13131"), got.stderr


# ---------------------------------------------------------------------------------
# messages

def test_show_at_seq_0_does_not_suggest_migrate(tmp_path: Path) -> None:
    """Did: `show --at 0` on a migrated ledger (REF 0 is documented: "seq 0, the empty
    ledger, only by `--to 0`"). Happened: stderr "the ledger is empty: `moltis-ledger
    migrate` imports moltis.toml". Should: the ledger is not empty; running migrate is
    not what the operator needs. Say it is the state before the first event."""
    env = _site(tmp_path)
    got = _cli(env, "show", "--at", "0")
    assert got.returncode == 0, got.stderr
    assert "migrate" not in got.stderr, got.stderr


def test_the_unknown_key_hint_points_at_a_list_of_the_keys(tmp_path: Path) -> None:
    """Did: `get tools.agent_max_iteratons` (a typo) with --json. Happened: hint
    "docs/cli.md lists the configuration's keys" (and an invalid value's hint "the
    value's type in docs/cli.md"); docs/cli.md lists neither (no agent_max_iterations,
    no types). Should: point at where the keys are (check, Moltis's configuration
    reference), or docs/cli.md lists them."""
    env = _site(tmp_path)
    got = _cli(env, "--json", "get", "tools.agent_max_iteratons")
    assert got.returncode == 1
    hint = json.loads(got.stdout)["hint"] or ""
    if "docs/cli.md" in hint:  # the page it names lists the key the operator meant
        assert "agent_max_iterations" in (DOCS / "cli.md").read_text(encoding="utf-8"), hint
    assert "show --effective" in hint, hint  # the command it names lists the key
    listed = _cli(env, "show", "--effective")
    assert "agent_max_iterations = " in listed.stdout, listed.stderr


def test_a_key_with_a_control_character_is_written_one_way(tmp_path: Path) -> None:
    """Did: migrate `[mcp.servers."srv\\u001b[2Jx"]` (a key holding ESC), then `blame`
    and `show`. Happened: blame/log/migrate print the path as
    mcp.servers."srv\\u001b[2Jx", show prints [mcp.servers."srv\\x1b[2Jx"]. Should:
    docs/cli.md: control characters appear as `\\x1b` and "That form is the same in every
    human output"."""
    env = _site(tmp_path, toml='[mcp.servers."srv\\u001b[2Jx"]\ncommand = "npx"\n')
    blame = _cli(env, "blame", "mcp")
    show = _cli(env, "show")
    assert "\x1b" not in blame.stdout + show.stdout  # escaped, as documented
    assert 'srv\\x1b[2Jx"' in show.stdout, show.stdout
    assert 'srv\\x1b[2Jx"' in blame.stdout, blame.stdout


def test_the_file_store_says_a_masked_secret_is_a_placeholder(tmp_path: Path) -> None:
    """The reread: the file store's effective view is a decoded copy of its encoded
    typed config, and the placeholder did not survive that round trip (it failed
    closed, but as "read without access to the ledger's secrets")."""
    import asyncio

    from ledger.errors import SecretKeyError
    from ledger.stores.file_store import FileConfigStore

    config = tmp_path / "moltis.toml"
    config.write_text('[providers.openai]\napi_key = "<secret fp:0123456789abcdef>"\n',
                      encoding="utf-8")
    cfg = asyncio.run(FileConfigStore(config).load_effective())
    with pytest.raises(SecretKeyError, match="is a masked placeholder"):
        cfg.providers.entries["openai"].api_key.reveal()


@pytest.mark.parametrize("in_a_list", [False, True])
def test_a_config_read_from_a_masked_file_saves_into_the_ledger_holding_its_secrets(
        tmp_path: Path, in_a_list: bool) -> None:
    """The reread: a placeholder read by the file store (`Secret.placeholder`) carries a
    reference that names no stored value; saved into a ledger (a gateway copying the
    file store's config into it), that empty reference was stored, and the secret no
    longer opened. It stands for its mask text: the value the ledger holds."""
    import asyncio

    from ledger import MemoryConfigStore
    from ledger.ops.export import export_documents
    from ledger.stores.file_store import FileConfigStore

    real = "sk-real-0123456789abcdef"
    doc: dict = ({"mcp": {"servers": {"s": {"command": "x", "args": ["--key", real]}}}}
                 if in_a_list else {"providers": {"openai": {"api_key": real}}})
    store = MemoryConfigStore()
    asyncio.run(store.save_raw(doc, actor="setup", source="import"))
    config = tmp_path / "moltis.toml"
    ledger = store.ledger
    config.write_text(export_documents(ledger, ledger.head_state().seq).config_text,
                      encoding="utf-8")
    cfg = asyncio.run(FileConfigStore(config).load_raw())
    commit = asyncio.run(store.save_raw(cfg, actor="gateway"))
    assert not commit.appended
    got = asyncio.run(store.load_raw())
    value = (got.mcp.servers["s"].args[1] if in_a_list
             else got.providers.entries["openai"].api_key)
    assert (value if isinstance(value, str) else value.reveal()) == real
