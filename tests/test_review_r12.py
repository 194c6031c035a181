"""Review r12 (commits 68ea4ec..0c09be5: the MOLTIS_* layer as its own module with the
VERCEL_*/DAYTONA_* aliases, numbers bounded by their Rust types, switch-backend's
put-back, table set and array paths, phone_* baseUrl as a secret): findings as failing
tests with real files and real CLI processes (no library code replaced).

Each test is marked xfail(strict=True) until it is fixed. "Moltis does X" claims cite
zuisong/moltis at 6bd2d118.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest

from tests.killed_cli import killed_cli
from tests.test_review_r11 import FIXTURES, _cli, _site

# CLI processes on real configs, environments and switches (bad input): run by
# .ci/run
pytestmark = pytest.mark.torture

# ---------------------------------------------------------------------------------
# Environment overrides (crates/config/src/loader/config_io.rs)


def test_a_very_long_digit_env_value_does_not_stop_effective_reads(tmp_path: Path) -> None:
    env = _site(tmp_path)
    got = _cli({**env, "MOLTIS_IDENTITY__NAME": "1" * 5000}, "get", "--effective",
               "server.port")
    assert (got.returncode, got.stdout.strip()) == (0, "13131"), got.stderr[-500:]


def test_an_alias_does_not_override_a_table_set_by_an_env_override(tmp_path: Path) -> None:
    env = _site(tmp_path)
    got = _cli({**env, "VERCEL_PROJECT_ID": "prj_alias",
                "MOLTIS_TOOLS__EXEC__SANDBOX": '{"vercel_project_id": "prj_json"}'},
               "get", "--effective", "tools.exec.sandbox.vercel_project_id")
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "prj_json", (got.stdout, got.stderr)


# ---------------------------------------------------------------------------------
# Numbers: bounded by their Rust types, both ways


@pytest.mark.parametrize("path", ["tools.browser.viewport_width",
                                  "tools.exec.sandbox.resource_limits.pids_max"])
def test_a_u32_field_refuses_what_moltis_cannot_load(tmp_path: Path, path: str) -> None:
    env = _site(tmp_path)
    got = _cli(env, "set", path, str(2**32))
    assert got.returncode == 1, got.stdout
    assert path in got.stderr and "4294967295" in got.stderr, got.stderr


@pytest.mark.parametrize("toml", [
    "[voice.stt.sherpa_onnx]\nsample_rate = 16000.0\n",
    "[code_index]\nmax_concurrent_jobs = -1\n",
    '[memory]\nbatch_threshold = "50"\n',
], ids=["sherpa-sample-rate", "code-index-jobs", "memory-batch-threshold"])
def test_migrate_keeps_keys_moltis_does_not_type(tmp_path: Path, toml: str) -> None:
    env = _site(tmp_path, toml="[server]\nport = 13131\n\n" + toml, migrate=False)
    got = _cli(env, "migrate")
    assert got.returncode == 0, got.stderr


# ---------------------------------------------------------------------------------
# switch-backend file: the put-back


def test_a_killed_switch_does_not_leave_the_gateway_without_its_keys(tmp_path: Path) -> None:
    env = _site(tmp_path, keys=FIXTURES / "provider_keys.json")
    config = tmp_path / "config"
    got = killed_cli(env, "open", "provider_keys.json", 1, "switch-backend", "file")
    assert got.returncode == -9, got.stderr
    switched = tomllib.loads((config / "moltis.toml").read_text()).get(
        "config", {}).get("backend") == "file"
    keys = config / "provider_keys.json"
    assert not switched or keys.exists(), "gateway switched to the file store, keys missing"


def test_a_failed_switch_puts_back_a_dangling_keys_symlink(tmp_path: Path) -> None:
    env = _site(tmp_path, keys=FIXTURES / "provider_keys.json")
    config, vault = tmp_path / "config", tmp_path / "vault"
    vault.mkdir(mode=0o700)
    os.symlink(vault / "provider_keys.json", config / "provider_keys.json")
    got = _cli({**env, "MOLTIS_CONFIG_BACKEND": "sqlite"}, "switch-backend", "file")
    assert got.returncode != 0, got.stdout
    assert (config / "provider_keys.json").is_symlink()
    assert not (vault / "provider_keys.json").exists(), "plaintext keys left behind"


def test_a_failed_switch_keeps_the_config_files_mode(tmp_path: Path) -> None:
    env = _site(tmp_path, keys=FIXTURES / "provider_keys.json")
    toml = tmp_path / "config" / "moltis.toml"
    toml.chmod(0o644)
    got = _cli({**env, "MOLTIS_CONFIG_BACKEND": "sqlite"}, "switch-backend", "file")
    assert got.returncode != 0, got.stdout
    assert oct(toml.stat().st_mode & 0o777) == oct(0o644)


# ---------------------------------------------------------------------------------
# set: paths below arrays, tables


def test_set_below_a_stored_array_in_a_free_form_map_is_refused(tmp_path: Path) -> None:
    env = _site(tmp_path, toml="[server]\nport = 13131\n\n[channels.telegram.bot1]\n"
                "enabled = true\nallowlist = [\"alice\", \"bob\"]\n")
    got = _cli(env, "set", "channels.telegram.bot1.allowlist.0", "carol")
    assert got.returncode == 1, got.stdout
    assert "array" in got.stderr, got.stderr
    value = json.loads(_cli(env, "--json", "get", "channels.telegram.bot1.allowlist").stdout)
    assert value["value"] == ["alice", "bob"]


def test_a_table_set_refuses_an_unknown_key_as_a_leaf_set_does(tmp_path: Path) -> None:
    env = _site(tmp_path)
    leaf = _cli(env, "set", "tools.browser.viewport_widht", "100")
    assert leaf.returncode == 1 and "viewport_width" in leaf.stderr, leaf.stderr
    table = _cli(env, "set", "tools.browser", '{"viewport_widht": 100}')
    assert table.returncode == 1, table.stdout
    assert "tools.browser.viewport_widht" in table.stderr, table.stderr
