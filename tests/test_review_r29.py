"""Review r29: the fixes of b969a77..f4c5843: retire_keys_file comparing a key file with
what the ledger holds (ledger.ops.migrate keys_held), a sealed secret agreeing by its
keyed fingerprint (_holds), switch-backend refusing a ledger the environment overrides
(ledger.cli.switch_source _refuse_other_location).

Each test is a finding, marked xfail(strict=True) until it is fixed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.migrated_site import cli_process
from tests.test_review_r28 import _env
from tests.test_switch_postgres import dsn  # noqa: F401  (a fixture: a scratch database)

# CLI processes against one ledger, PostgreSQL servers: run by .ci/run
pytestmark = pytest.mark.torture


def _gateway_backend(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The gateway's `open_store()` in its own process: the backend it serves from."""
    return subprocess.run(
        [sys.executable, "-c", "from ledger.ops.open_store import open_store; "
         "print(open_store().backend_name)"],
        env=env, capture_output=True, text=True, timeout=120, check=False)


# ---------------------------------------------------------------------------------
# 1. retire_keys_file by what the ledger holds (87b4b32)


@pytest.mark.parametrize("entry", [
    pytest.param({"apiKey": "sk-proxy-0123456789",
                  "baseUrl": "https://team:pr0xy-pass@llm-proxy.example/v1"},
                 id="baseUrl-with-credentials"),
    pytest.param({"apiKey": "sk-list-0123456789", "fallbacks": [{"api_key": "sk-fb-42"}]},
                 id="list-holding-a-secret"),
])
def test_migrate_retires_a_key_file_the_ledger_holds(tmp_path: Path,
                                                      entry: dict[str, object]) -> None:
    """What I did: moltis.toml and provider_keys.json `{"custom-proxy": ENTRY}` (ENTRY:
    an apiKey and a baseUrl with credentials in its userinfo, a proxy; or an apiKey and
    a list holding a secret), `migrate` (sqlite), then `migrate` again.
    What happened: the import seals both values (`set keys:custom-proxy.baseUrl =
    <secret fp:...>`), exits 0, switches the gateway to the ledger, and keeps
    provider_keys.json: the plaintext file, apiKey included, stays beside the ledger
    after every run, with no word saying so (before 87b4b32 it was retired). The
    gateway's first-start import keeps it the same way.
    What should happen: the ledger holds every value of the file, so migrate retires it
    into the sealed backup ("retired ...: its keys are in the ledger"), as it does for
    a file of apiKeys only.
    Mechanism: ledger/ops/migrate.py keys_held gives a sealed leaf `"k:" + ref.fp`, the
    fingerprint of the plaintext, while leaf_prints gives a value that is not a secret
    by its path but holds one (`holds_secret`: a URL with a password, a list) `"k:" +
    fingerprint(json.dumps(value))` - never equal; and a list holding sealed references
    gets no print at all ("matches nothing"), so ledger/ops/retire.py retire_keys_file
    keeps such a file for good."""
    env = _env(tmp_path, MOLTIS_CONFIG_BACKEND="sqlite")
    (tmp_path / "config" / "moltis.toml").write_text("[server]\nport = 13131\n",
                                                     encoding="utf-8")
    keys_file = tmp_path / "config" / "provider_keys.json"
    keys_file.write_text(json.dumps({"custom-proxy": entry}), encoding="utf-8")
    first = cli_process(env, "migrate")
    assert first.returncode == 0, first.stderr
    second = cli_process(env, "migrate")
    assert second.returncode == 0, second.stderr
    assert not keys_file.exists(), (first.stdout, second.stdout)


def test_migrate_does_not_retire_a_key_file_whose_key_the_ledger_shredded(
        tmp_path: Path) -> None:
    """What I did: provider_keys.json `{"openai": {"apiKey": "sk-A-..."}}`, `migrate
    --keep-files` (sqlite); `shred --path keys:openai.apiKey --yes` (it also removes
    the migration backup's provider_keys.json.sealed: "a migration backup held the
    value"); `migrate`.
    What happened: "nothing to import: the ledger already has every value of ...
    provider_keys.json" and "retired provider_keys.json: its keys are in the ledger,
    the file is sealed in <a new migrate-* backup>": `get keys:openai.apiKey` gives
    `<secret destroyed fp:...>`. The ledger has no key, the plaintext file is gone,
    and a new backup holds the value shred had just scrubbed from the backups.
    What should happen: a destroyed value is not a value the ledger holds: the key
    file is kept (or migrate says the key is shredded in the ledger), never retired as
    "its keys are in the ledger".
    Mechanism: ledger/ops/migrate.py keys_held gives every SecretRef `"k:" + ref.fp`
    without asking the vault whether it is destroyed (`Vault.is_destroyed`), so
    ledger/ops/retire.py retire_keys_file sees the file's fingerprint held."""
    env = _env(tmp_path, MOLTIS_CONFIG_BACKEND="sqlite")
    (tmp_path / "config" / "moltis.toml").write_text("[server]\nport = 13131\n",
                                                     encoding="utf-8")
    keys_file = tmp_path / "config" / "provider_keys.json"
    keys_file.write_text(json.dumps({"openai": {"apiKey": "sk-A-0123456789"}}),
                         encoding="utf-8")
    assert cli_process(env, "migrate", "--keep-files").returncode == 0
    shred = cli_process(env, "shred", "--path", "keys:openai.apiKey", "--yes")
    assert shred.returncode == 0, shred.stderr
    again = cli_process(env, "migrate")
    assert again.returncode == 0, again.stderr
    held = cli_process(env, "get", "keys:openai.apiKey")
    assert keys_file.exists() or "destroyed" not in held.stdout, again.stdout


# ---------------------------------------------------------------------------------
# 3. a switch the environment overrides (f4c5843)


@pytest.mark.postgres
def test_a_switch_back_to_sqlite_is_where_the_gateway_then_goes(
        tmp_path: Path, dsn: str) -> None:  # noqa: F811
    """What I did: a site on PostgreSQL through MOLTIS_CONFIG_DB=postgresql://... (the
    r27 case: `migrate` writes `[config] backend = "postgres"`, no dsn); then, back to
    the default SQLite ledger, `--db <data>/moltis.db switch-backend sqlite` (without
    --db it says "--db names a postgres ledger, not sqlite", though none was given).
    What happened: exit 0, "wrote moltis.toml: [config] backend = "sqlite"", "proven:
    the sqlite ledger at .../moltis.db gives the same effective config", and on the
    next line "the gateway uses from now on: the postgres ledger at postgresql://...":
    the gateway's open_store() and every later `set` go to PostgreSQL, the sqlite
    ledger the switch proved is left behind - the r28 finding 3 the other way round.
    What should happen: the switch refuses before writing anything, naming
    MOLTIS_CONFIG_DB (it overrides [config] and opens PostgreSQL whatever backend
    says), or the gateway then opens the sqlite ledger.
    Mechanism: ledger/cli/switch_source.py _refuse_other_location returns for a
    target sqlite when MOLTIS_CONFIG_DB `is_dsn`, but ledger/ops/installation.py
    select_backend takes MOLTIS_CONFIG_DB as the location under backend sqlite and
    names a DSN "postgres"."""
    env = _env(tmp_path, MOLTIS_CONFIG_DB=dsn)
    (tmp_path / "config" / "moltis.toml").write_text("[server]\nport = 13131\n",
                                                     encoding="utf-8")
    migrated = cli_process(env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    db = str(tmp_path / "data" / "moltis.db")
    switched = cli_process(env, "--db", db, "switch-backend", "sqlite")
    if switched.returncode != 0:
        return  # a refusal naming the environment is a fine answer
    gateway = _gateway_backend(env)
    assert gateway.stdout.strip() == "sqlite", (switched.stdout, gateway.stderr[-600:])


@pytest.mark.postgres
def test_a_switch_back_to_the_sqlite_ledger_moltis_config_db_names(
        tmp_path: Path, dsn: str) -> None:  # noqa: F811
    """What I did: MOLTIS_CONFIG_DSN=postgresql://... and `--db DSN migrate` (the
    gateway runs on PostgreSQL); then, to go back to SQLite, MOLTIS_CONFIG_DB=<data
    dir>/moltis.db added to the environment and `switch-backend sqlite` (docs/cli.md:
    "To sqlite / postgres (the ledger named by --db, MOLTIS_CONFIG_DB/_DSN, [config]
    or the default)").
    What happened: exit 2, "Error: --db names a postgres ledger, not sqlite" - no --db
    was given; the same switch with `--db <that path>` goes through and proves itself.
    What should happen: the switch takes the sqlite ledger MOLTIS_CONFIG_DB names (exit
    0, the gateway then opens sqlite), or a refusal that names what is wrong.
    Mechanism: ledger/cli/switch_source.py switch_target: with MOLTIS_CONFIG_DB set it
    neither sets state.db nor asks for the sqlite location, so state.location() follows
    `[config] backend = "postgres"` and returns the DSN."""
    env = _env(tmp_path, MOLTIS_CONFIG_DSN=dsn)
    (tmp_path / "config" / "moltis.toml").write_text("[server]\nport = 13131\n",
                                                     encoding="utf-8")
    migrated = cli_process(env, "--db", dsn, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    env["MOLTIS_CONFIG_DB"] = str(tmp_path / "data" / "moltis.db")
    switched = cli_process(env, "switch-backend", "sqlite")
    assert switched.returncode == 0, switched.stderr
    assert _gateway_backend(env).stdout.strip() == "sqlite", switched.stdout


def test_a_switch_to_sqlite_named_through_a_symlinked_data_dir(tmp_path: Path) -> None:
    """What I did: the data dir is a symbolic link (`moltis-data -> data`, as a volume
    mount or /var/lib link); MOLTIS_CONFIG_DB=<moltis-data>/moltis.db in the gateway's
    environment; the gateway on the file store; `--db <data>/moltis.db switch-backend
    sqlite` (the same file, by its real path).
    What happened: exit 1, "MOLTIS_CONFIG_DB names another sqlite ledger
    (.../moltis-data/moltis.db) ... Unset it (or point it at .../data/moltis.db)": it is
    that ledger.
    What should happen: the same file is not another ledger: the switch goes through
    and the gateway then opens sqlite.
    Mechanism: ledger/cli/switch_source.py _refuse_other_location compares
    `os.path.abspath` (no symlink resolution, no `sqlite://` prefix stripped) rather
    than the file (os.path.samefile / realpath) or the ledger_id."""
    env = _env(tmp_path)
    link = tmp_path / "moltis-data"
    link.symlink_to(tmp_path / "data")
    env["MOLTIS_CONFIG_DB"] = str(link / "moltis.db")
    (tmp_path / "config" / "moltis.toml").write_text("[server]\nport = 13131\n",
                                                     encoding="utf-8")
    switched = cli_process(env, "--db", str(tmp_path / "data" / "moltis.db"),
                           "switch-backend", "sqlite")
    assert switched.returncode == 0, switched.stderr
    assert _gateway_backend(env).stdout.strip() == "sqlite", switched.stdout
