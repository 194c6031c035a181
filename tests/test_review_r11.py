"""Review r11: an operator trying real Moltis configs (the docs corpus, the key-file
shapes, hand-written files) with the CLI as separate processes.

Each test is a finding, marked xfail(strict=True) until it is fixed. The "Moltis
accepts this" claims cite zuisong/moltis at 6bd2d118 (the reference's snapshot).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.migrated_site import cli_here

# real Moltis configs and environments through CLI processes (bad input): run by
# .ci/run
pytestmark = pytest.mark.torture

FIXTURES = Path(__file__).parent / "fixtures" / "moltis"

TOML = """\
# the gateway of the team (hand-written)
[server]
port = 13131  # the public port

[mcp.servers.tools]
command = "npx"
args = ["-y", "@x/tools"]

[[hooks.hooks]]
name = "audit"
command = "./audit.sh"
events = ["BeforeToolCall"]
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTIS_")}
    env.update(MOLTIS_CONFIG_DIR=str(tmp_path / "config"), MOLTIS_DATA_DIR=str(tmp_path / "data"),
               MOLTIS_LEDGER_KEY_FILE=str(tmp_path / "ledger.key"),
               MOLTIS_LEDGER_ACTOR="tester@r11")
    env.update(extra)
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledger", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _site(tmp_path: Path, toml: str = TOML, keys: Path | None = None,
          migrate: bool = True) -> dict[str, str]:
    (tmp_path / "config").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "config" / "moltis.toml").write_text(toml, encoding="utf-8")
    if keys is not None:
        shutil.copy(keys, tmp_path / "config" / "provider_keys.json")
    env = _env(tmp_path)
    if migrate:  # a set-up: the CLI in this process (tests run it in their own)
        done = cli_here(env, "migrate")
        assert done.returncode == 0, done.stderr
    return env


# ---------------------------------------------------------------------------------
# Environment overrides (Moltis: crates/config/src/loader/config_io.rs, 780-983)

def test_a_numeric_env_override_of_a_secret_does_not_crash_effective_reads(
        tmp_path: Path) -> None:
    """A MOLTIS_* override whose parsed value is not a string where the schema types a
    Secret raised NotImplementedError from layers._env_hook: every effective read (and
    the gateway's load) crashed. Moltis parses "12345" as an i64 (parse_env_value,
    config_io.rs:975), Secret<String> refuses it and Moltis drops the overrides with a
    warning (config_io.rs:903-909); the ledger ignores only a bad override, and takes a
    scalar's text where a string fits (README, Layers), as for any string field."""
    env = _site(tmp_path)
    got = _cli({**env, "MOLTIS_PROVIDERS__OPENAI__API_KEY": "12345"}, "get", "--effective",
               "server.port")
    assert (got.returncode, got.stdout.strip()) == (0, "13131"), got.stderr
    key = _cli({**env, "MOLTIS_PROVIDERS__OPENAI__API_KEY": "12345"}, "--json", "get",
               "--effective", "providers.openai.api_key")
    assert key.returncode == 0 and "MOLTIS_PROVIDERS__OPENAI__API_KEY" in key.stdout, key
    assert "12345" not in key.stdout  # masked, as any secret
    variable = "MOLTIS_PROVIDERS__OPENAI"
    got = _cli({**env, variable: '{"api_key": 5}'}, "get", "--effective", "server.port")
    assert (got.returncode, got.stdout.strip()) == (0, "13131"), got.stderr
    assert variable in got.stderr  # reported as an ignored override


def test_the_gateway_starts_with_a_numeric_secret_override(tmp_path: Path) -> None:
    env = _site(tmp_path)
    code = ("import asyncio\nfrom ledger import open_store\n"
            "async def main():\n    cfg = await open_store().load_effective()\n"
            "    print(cfg.server.port)\nasyncio.run(main())\n")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "MOLTIS_PROVIDERS__OPENAI__API_KEY": "12345"},
                         timeout=120, check=False)
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.strip() == "13131"


def test_env_booleans_are_case_insensitive_as_in_moltis(tmp_path: Path) -> None:
    env = _site(tmp_path)
    for text in ("TRUE", "True"):
        got = _cli({**env, "MOLTIS_AUTH__DISABLED": text}, "get", "--effective",
                   "auth.disabled")
        assert got.returncode == 0, got.stderr
        assert got.stdout.strip() == "true", (text, got.stderr)


@pytest.mark.parametrize("text", ["1_000", "\u0661\u0662\u0663\u0664", " 8080"],
                         ids=["underscore", "arabic-digits", "leading-space"])
def test_env_numbers_parse_as_rust_parses_them(tmp_path: Path, text: str) -> None:
    env = _site(tmp_path)
    got = _cli({**env, "MOLTIS_SERVER__PORT": text}, "--json", "get", "--effective",
               "server.port")
    assert got.returncode == 0, got.stderr
    assert '"value": 13131' in got.stdout, got.stdout  # the override does not apply
    assert "MOLTIS_SERVER__PORT" in got.stderr  # and is reported as ignored


def test_the_vercel_token_alias_shows_in_the_effective_view(tmp_path: Path) -> None:
    env = _site(tmp_path)
    got = _cli({**env, "VERCEL_TOKEN": "vercel-token-0123456789abcdef"}, "--json", "get",
               "--effective", "tools.exec.sandbox.vercel_token")
    assert got.returncode == 0, got.stderr
    assert "<secret fp:" in got.stdout
    assert "vercel-token-0123456789abcdef" not in got.stdout + got.stderr


# ---------------------------------------------------------------------------------
# Values Moltis loads (its Rust types have no such bounds; only `moltis config check`
# warns about some): migrate refuses the whole file

@pytest.mark.parametrize("toml", [
    # u32, semantic.rs:1160 only warns above 10M (providers.rs:84)
    '[models."big"]\ncontext_window = 20000000\n',
    # f64 without bounds (schema.rs:193)
    '[user.location]\nlatitude = 123.0\nlongitude = 2.0\n',
    # u8 (tools.rs:302)
    '[tools.web.search]\nmax_results = 20\n',
    # f32 (memory.rs:66)
    '[memory]\nvector_weight = 1.5\n',
    # f64, semantic.rs:1052 reports it, the loader does not refuse it
    '[instrumentation]\nsample_rate = 2.0\n',
    # u32, semantic.rs:998 warns (tools.rs:54)
    '[tools]\ntool_result_compaction_ratio = 150\n',
    # Option<f32> (voice.rs:147)
    '[voice.tts.google]\npitch = 30.0\n',
], ids=["context_window", "latitude", "max_results", "vector_weight", "sample_rate",
        "compaction_ratio", "pitch"])
def test_migrate_keeps_values_moltis_loads(tmp_path: Path, toml: str) -> None:
    env = _site(tmp_path, toml=toml, migrate=False)
    got = _cli(env, "migrate")
    assert got.returncode == 0, got.stderr
    checked = _cli(env, "--json", "check")  # reported there, as Moltis's check does
    assert checked.returncode in (0, 1), checked.stderr
    assert "is outside" in checked.stdout and '"warning"' in checked.stdout, checked.stdout


def test_migrate_keeps_an_infinite_float_moltis_loads(tmp_path: Path) -> None:
    env = _site(tmp_path, toml='[server]\nport = 13131\n\n[channels.telegram.bot1]\n'
                'enabled = true\nretry_backoff = inf\n', migrate=False)
    got = _cli(env, "migrate")
    assert got.returncode == 0, got.stderr


# ---------------------------------------------------------------------------------
# provider_keys.json with a phone_* entry (Moltis writes it: twilio stores the auth
# token in baseUrl; reference section 4, tests/fixtures/moltis/provider_keys.json)

def test_switch_backend_file_proves_a_phone_twilio_entry(tmp_path: Path) -> None:
    env = _site(tmp_path, keys=FIXTURES / "provider_keys.json")
    got = _cli(env, "switch-backend", "file")
    assert got.returncode == 0, got.stderr


def test_a_failed_switch_backend_file_leaves_the_gateway_where_it_was(tmp_path: Path) -> None:
    """A switch that does not prove itself (here: MOLTIS_CONFIG_BACKEND keeps the
    gateway on the ledger) had already written `[config] backend = "file"` and the
    ledger's secrets into the files when it reported failure (half-done): the files are
    now put back as they were."""
    env = _site(tmp_path, keys=FIXTURES / "provider_keys.json")
    config = tmp_path / "config"
    before = {p.name: p.read_bytes() for p in config.iterdir() if p.is_file()}
    got = _cli({**env, "MOLTIS_CONFIG_BACKEND": "sqlite"}, "switch-backend", "file")
    assert got.returncode != 0 and "MOLTIS_CONFIG_BACKEND" in got.stderr, got
    after = {p.name: p.read_bytes() for p in config.iterdir() if p.is_file()}
    assert after == before  # nothing switched, no secret written out
    assert "backend" not in tomllib.loads(after["moltis.toml"].decode()).get("config", {}) or \
        tomllib.loads(after["moltis.toml"].decode())["config"]["backend"] != "file"


# ---------------------------------------------------------------------------------
# set / unset on real shapes

def test_set_of_a_table_replaces_it(tmp_path: Path) -> None:
    env = _site(tmp_path)
    done = _cli(env, "set", "mcp.servers.tools", '{"command": "uvx"}')
    assert done.returncode == 0, done.stderr
    got = _cli(env, "--json", "get", "mcp.servers.tools")
    assert '"args"' not in got.stdout, got.stdout
    # a masked secret passed back in the new table keeps its value
    done = _cli(env, "set", "mcp.servers.tools",
                '{"command": "npx", "env": {"API_TOKEN": "tok-0123456789abcdef"}}')
    assert done.returncode == 0, done.stderr
    mask = json.loads(_cli(env, "--json", "get", "mcp.servers.tools").stdout)["value"]["env"][
        "API_TOKEN"]
    done = _cli(env, "set", "mcp.servers.tools",
                json.dumps({"command": "uvx", "env": {"API_TOKEN": mask}}))
    assert done.returncode == 0, done.stderr
    value = json.loads(_cli(env, "--json", "get", "mcp.servers.tools").stdout)["value"]
    assert value == {"command": "uvx", "env": {"API_TOKEN": mask}}


def test_an_array_of_tables_element_path_names_the_fix(tmp_path: Path) -> None:
    env = _site(tmp_path)
    got = _cli(env, "set", "hooks.hooks.0.timeout", "5")
    assert got.returncode == 1
    assert "Moltis does not know it" not in got.stderr, got.stderr
    assert "--allow-unknown" not in got.stderr, got.stderr
    assert "set hooks.hooks" in got.stderr, got.stderr
    forced = _cli(env, "set", "--allow-unknown", "hooks.hooks.0.timeout", "5")
    assert "--string" not in forced.stderr, forced.stderr


# ---------------------------------------------------------------------------------
# Round trips

@pytest.mark.xfail(strict=True, reason="TOML dates and times are stored as strings: an "
                   "export writes `when = \"1979-05-27T00:32:00-07:00\"` for "
                   "`when = 1979-05-27T00:32:00-07:00` (a kept unknown key changes type)")
def test_an_export_keeps_toml_dates(tmp_path: Path) -> None:
    env = _site(tmp_path, toml='[server]\nport = 13131\n\n[maintenance]\n'
                'when = 1979-05-27T00:32:00-07:00\nday = 2024-05-01\n')
    out = tmp_path / "export"
    done = _cli(env, "export", "--reveal-secrets", "-o", str(out))
    assert done.returncode == 0, done.stderr
    exported = tomllib.loads((out / "moltis.toml").read_text())["maintenance"]
    assert not isinstance(exported["when"], str), exported
    assert not isinstance(exported["day"], str), exported


def test_the_string_hint_only_where_a_string_fits(tmp_path: Path) -> None:
    """"pass --string" is advice only where the text fits the key: a port given as text
    would not load in Moltis either (review r11)."""
    env = _site(tmp_path)
    port = _cli(env, "set", "server.port", "70000")
    assert port.returncode != 0 and "--string" not in port.stderr, port
    name = _cli(env, "set", "identity.name", "1984")
    assert name.returncode == 0 or "--string" in name.stderr, name
