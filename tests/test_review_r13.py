"""Review r13: moltis.yaml / moltis.json sites, histories with secrets, and the
PostgreSQL backend, driven as an operator would (CLI processes, real files, a real
PostgreSQL server when LEDGER_TEST_PG_URL is set).

Each test is a finding, marked xfail(strict=True) until it is fixed. "Moltis accepts
this" claims cite zuisong/moltis at 6bd2d118 (crates/config/src/loader/config_io.rs:
`parse_config` hands a .yaml/.yml file to `serde_yaml::from_str` and a .json file to
`serde_json::from_str`, lines 1020-1031; Cargo.lock pins serde_yaml 0.9.34) and
dtolnay/serde-yaml at tag 0.9.34 (src/de.rs).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.test_review_r11 import FIXTURES, _cli, _env, _site

# YAML/JSON configs, rollback and PostgreSQL through CLI processes (bad input): run
# by .ci/run
pytestmark = pytest.mark.torture


def _file_site(tmp_path: Path, name: str, text: str) -> dict[str, str]:
    (tmp_path / "config").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "config" / name).write_text(text, encoding="utf-8")
    return _env(tmp_path)


# ---------------------------------------------------------------------------------
# moltis.json / moltis.yaml values Moltis loads

@pytest.mark.parametrize(("name", "text"), [
    ("moltis.json", '{"server": {"port": 13131}, "identity": {"name": null}}\n'),
    ("moltis.yaml", "server:\n  port: 13131\nidentity:\n  name: ~\n"),
])
def test_a_null_for_an_optional_field_is_loaded_as_moltis_does(tmp_path: Path, name: str,
                                                                 text: str) -> None:
    """`identity.name` is `Option<String>` (schema.rs:120-124): serde_json reads `null`
    as None, and serde_yaml 0.9 reads `~`/`null`/empty as None (de.rs
    `deserialize_option`, `parse_null`). Moltis loads both files; `check --file` and
    `migrate` refused them with "identity.name: unsupported value of type NoneType"."""
    env = _file_site(tmp_path, name, text)
    checked = _cli(env, "check", "--file", str(tmp_path / "config" / name))
    assert "NoneType" not in checked.stderr and checked.returncode == 0, checked.stderr
    done = _cli(env, "migrate")
    assert done.returncode == 0, done.stderr
    got = _cli(env, "get", "server.port")
    assert got.stdout.strip() == "13131", got.stderr


def test_a_yaml_plain_scalar_in_a_string_field_is_its_text(tmp_path: Path) -> None:
    """serde_yaml 0.9.34 `deserialize_str` (de.rs:1472-1490) hands any scalar's text to
    the visitor, so `theme: 0x1F` / `name: 1_000` / `bind: 1.10` load in Moltis as the
    strings "0x1F", "1_000", "1.10". The ledger's YAML reader (ruamel, typed) turns them
    into numbers and `migrate` refuses the file. Lenient where Moltis is: keep the text
    (and say so in `check`)."""
    env = _file_site(tmp_path, "moltis.yaml",
                     "server:\n  port: 13131\nidentity:\n  theme: 0x1F\n  name: 1_000\n")
    done = _cli(env, "migrate")
    assert done.returncode == 0, done.stderr
    assert _cli(env, "get", "identity.theme").stdout.strip() == "0x1F"
    assert _cli(env, "get", "identity.name").stdout.strip() == "1_000"


def test_a_yaml_timestamp_looking_string_keeps_its_text(tmp_path: Path) -> None:
    """serde_yaml has no timestamp type: `name: 2024-01-01 10:00:00` is the string
    "2024-01-01 10:00:00" for Moltis (de.rs:1472-1490). The ledger imported
    "2024-01-01T10:00:00", silently changing the value the gateway is given."""
    env = _file_site(tmp_path, "moltis.yaml",
                     "server:\n  port: 13131\nidentity:\n  name: 2024-01-01 10:00:00\n")
    done = _cli(env, "migrate")
    assert done.returncode == 0, done.stderr
    got = _cli(env, "get", "identity.name")
    assert got.stdout.strip() == "2024-01-01 10:00:00", got.stdout


def test_check_reports_a_yaml_merge_key_moltis_does_not_apply(tmp_path: Path) -> None:
    """serde_yaml 0.9's `from_str` into a struct does not apply `<<` (only
    `Value::apply_merge` does, src/value/mod.rs), so for Moltis `server` below holds an
    unknown key "<<" and `server.port` keeps its default. The ledger's safe loader
    merges: `migrate` imports `server.port = 13131`, which Moltis never read from this
    file, and `check --file` says nothing. It should at least warn (path `server.<<`)."""
    text = "base: &b\n  port: 13131\nserver:\n  <<: *b\n  bind: 0.0.0.0\n"
    env = _file_site(tmp_path, "moltis.yaml", text)
    checked = _cli(env, "--json", "check", "--file", str(tmp_path / "config" / "moltis.yaml"))
    assert "<<" in checked.stdout, checked.stdout


# ---------------------------------------------------------------------------------
# switch-backend between the two ledgers (PostgreSQL)

@pytest.fixture
def dsn() -> Iterator[str]:
    url = os.environ.get("LEDGER_TEST_PG_URL")
    if not url:
        pytest.skip("set LEDGER_TEST_PG_URL=postgresql://... to run the PostgreSQL tests")
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = f"ledger_r13_{secrets.token_hex(4)}"
    p = conninfo_to_dict(url)
    auth = quote(str(p.get("user", "")), safe="") + (
        f":{quote(str(p['password']), safe='')}" if p.get("password") else "")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://{auth}@{p.get('host', 'localhost')}:{p.get('port', 5432)}/{name}"
        finally:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_switch_backend_postgres_from_sqlite_keeps_keys_and_secrets(tmp_path: Path,
                                                                     dsn: str) -> None:
    """After `migrate` (sqlite), provider_keys.json is retired and moltis.toml holds
    masks. `--db DSN switch-backend postgres` then "makes the ledger equal the files":
    the PostgreSQL ledger got no provider entries (6 in the sqlite ledger), the config's
    api_key a `<secret fp:…>` with no stored value (`verify` exits 3: "its sealed row was
    deleted"), and the command printed "proven: … 1 provider(s)" and exit 0. The gateway
    now runs without its keys. It should carry the current ledger's state (values
    included) over, or refuse with the fix (switch to file first)."""
    toml = '[server]\nport = 13131\n\n[providers.openai]\napi_key = "sk-r13-NOT-REAL"\n'
    env = _site(tmp_path, toml=toml, keys=FIXTURES / "provider_keys.json")
    before = json.loads(_cli(env, "--json", "providers", "list").stdout)
    assert len(before) == 6
    switched = _cli(env, "--db", dsn, "switch-backend", "postgres")
    assert switched.returncode == 0, switched.stderr
    after = _cli(env, "--json", "providers", "list")
    assert sorted(json.loads(after.stdout)) == sorted(before), after.stdout
    verified = _cli(env, "verify")
    assert verified.returncode == 0, verified.stderr
