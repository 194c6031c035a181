"""Review r30: the fixes of fa4afb2..7d634f6: retire_keys_file comparing a key file with
the ledger's keys opened (ledger.ops.import_prints keys_held), and switch-backend sqlite
taking the ledger MOLTIS_CONFIG_DB names (ledger.cli.switch_source switch_target,
_refuse_other_location).

Each test is a finding, marked xfail(strict=True) until it is fixed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.migrated_site import cli_process
from tests.test_review_r28 import _env
from tests.test_review_r29 import _gateway_backend

# CLI processes against one ledger: run by .ci/run
pytestmark = pytest.mark.torture


def test_a_switch_with_an_empty_moltis_config_db_leaves_the_gateway_running(
        tmp_path: Path) -> None:
    """What I did: a site on the file store, with MOLTIS_CONFIG_DB set but empty in the
    gateway's environment (`MOLTIS_CONFIG_DB=` in an env file, `${DB}` of an unset
    variable in a compose file); the gateway starts on the file store. Then
    `switch-backend sqlite` (no --db).
    What happened: exit 1, "error: the sqlite ledger at  cannot be used (.: refusing to
    open the ledger database: it is a directory...)" - after it had created
    <data>/moltis.db and written `[config] backend = "sqlite"` (and a ledger_id) into
    moltis.toml. The gateway's open_store() now raises BackendUnavailableError: it no
    longer starts at all, where it ran on the file store before the switch.
    What should happen: refused before anything is written (as `--db=` is: "--db is
    empty ... an unset shell variable", and as `migrate` in the same environment is),
    naming MOLTIS_CONFIG_DB; or the switch goes through and the gateway opens the
    ledger it proved. Never a failed switch that leaves the gateway unable to start.
    Mechanism: ledger/cli/switch_source.py switch_target takes an empty MOLTIS_CONFIG_DB
    as unset (`not named_db`, state.db = the default path) and _refuse_other_location
    returns for it (`not named`), while ledger/ops/installation.py select_backend takes
    `env.get("MOLTIS_CONFIG_DB")` == "" as the location (only None falls through), so
    the proof's open_store() opens "" (the current directory); the switch writes
    moltis.toml before that proof and does not put it back."""
    env = _env(tmp_path, MOLTIS_CONFIG_DB="")
    toml = tmp_path / "config" / "moltis.toml"
    toml.write_text("[server]\nport = 13131\n", encoding="utf-8")
    assert _gateway_backend(env).stdout.strip() == "file"
    switched = cli_process(env, "switch-backend", "sqlite")
    gateway = _gateway_backend(env)
    assert gateway.returncode == 0, (switched.stdout, switched.stderr, toml.read_text(),
                                     gateway.stderr[-600:])
    expected = "sqlite" if switched.returncode == 0 else "file"
    assert gateway.stdout.strip() == expected, (switched.stderr, toml.read_text())


def test_a_libpq_dsn_in_moltis_config_db_is_no_sqlite_target(tmp_path: Path) -> None:
    """What I did: MOLTIS_CONFIG_DB set to a libpq key=value connection string whose
    first keyword is `password` (`password=Sup3r-S3cret-r30 host=127.0.0.1
    dbname=moltis user=moltis`: libpq takes keywords in any order); the gateway on the
    file store; `switch-backend sqlite` (no --db), run from the site's folder.
    What happened: exit 0, "proven: the sqlite ledger at password=Sup3r-S3cret-r30
    host=127.0.0.1 dbname=moltis user=moltis gives the same effective config" and "the
    gateway uses from now on: the sqlite ledger at password=Sup3r-S3cret-r30 ...": the
    password is printed (a terminal, a CI log), and a SQLite file named after the whole
    string, password included, is created in the current directory, as the ledger.
    What should happen: a DSN in MOLTIS_CONFIG_DB refuses a switch to sqlite (7d634f6),
    whatever order its keywords are in; and no message shows the password
    (describe_location redacts a DSN it recognises).
    Mechanism: ledger/backends/open.py is_dsn recognises a key=value string only when
    its first keyword is host/hostaddr/dbname/user/port/service (_LIBPQ_KEY), so
    ledger/cli/switch_source.py switch_target sets state.db to it as a sqlite path and
    ledger/ops/installation.py describe_location prints it as it is."""
    password = "Sup3r-S3cret-r30"
    env = _env(tmp_path, MOLTIS_CONFIG_DB=f"password={password} host=127.0.0.1 "
                                          "dbname=moltis user=moltis")
    (tmp_path / "config" / "moltis.toml").write_text("[server]\nport = 13131\n",
                                                     encoding="utf-8")
    switched = cli_process_in(tmp_path, env, "switch-backend", "sqlite")
    assert password not in switched.stdout + switched.stderr, switched.stdout
    assert not any(password in p.name for p in tmp_path.iterdir()), switched.stdout
    assert switched.returncode != 0, switched.stdout


def cli_process_in(cwd: Path, env: dict[str, str], *args: str
                   ) -> subprocess.CompletedProcess[str]:
    """`cli_process`, run from `cwd` (where a relative SQLite path lands)."""
    return subprocess.run([sys.executable, "-m", "ledger", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)
