"""`get --effective` / `show --effective` (text and --json) show every value an env
override, a flag or a `${VAR}` substitution contributes through the one secret policy
(`ledger.schema.secret_policy`): a URL with credentials in its userinfo and a
secret-shaped key of a free-form map are masked like the same value stored with `set`;
plain values are shown as before. In-process with click's CliRunner."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ledger.cli import cli
from ledger.core.secret_refs import parse_mask
from tests.migrated_site import site_env

PASSWORD = "envpassw0rd"  # a test value that must never be printed
USERINFO_URL = f"https://u:{PASSWORD}@proxy.example/v1"


@pytest.fixture(scope="module")
def base_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = site_env(tmp_path_factory.mktemp("site"))
    # a ${VAR} in the stored config whose value carries a password (the reference
    # itself is not a secret, so it is stored readable; its substitution is one)
    got = _call(env, "set", "mcp.servers.gh.url", "https://bot:${GH_PW}@mcp.example/sse")
    assert got.exit_code == 0, got.output
    return env


def _call(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def _run(env: dict[str, str], extra: dict[str, str], *args: str) -> Result:
    got = _call({**env, **extra}, *args)
    assert got.exit_code == 0, (args, got.output)
    assert PASSWORD not in got.output, (args, got.output[-600:])
    assert PASSWORD not in (got.stderr_bytes or b"").decode(), args
    return got


def _json_value(got: Result) -> Any:
    return json.loads(got.stdout)["value"]


ENV_URL = {"MOLTIS_PROVIDERS__OPENAI__BASE_URL": USERINFO_URL}
ENV_FREEFORM = {"MOLTIS_CHANNELS__TELEGRAM__MYBOT":
                json.dumps({"bot_password": PASSWORD, "chat_name": "ops-room"})}
VAR = {"GH_PW": PASSWORD}


def test_url_userinfo_from_an_env_override_is_masked(base_env: dict[str, str]) -> None:
    got = _run(base_env, ENV_URL, "get", "providers.openai.base_url", "--effective", "--json")
    assert parse_mask(_json_value(got)) is not None
    text = _run(base_env, ENV_URL, "get", "providers.openai.base_url", "--effective")
    assert "<secret" in text.stdout
    shown = json.loads(_run(base_env, ENV_URL, "show", "--effective", "--json").stdout)
    assert parse_mask(shown["providers"]["openai"]["base_url"]) is not None
    _run(base_env, ENV_URL, "show", "--effective")


def test_url_userinfo_from_a_var_substitution_is_masked(base_env: dict[str, str]) -> None:
    got = _run(base_env, VAR, "get", "mcp.servers.gh.url", "--effective", "--json")
    assert parse_mask(_json_value(got)) is not None
    _run(base_env, VAR, "get", "mcp.servers.gh.url", "--effective")
    shown = json.loads(_run(base_env, VAR, "show", "--effective", "--json").stdout)
    assert parse_mask(shown["mcp"]["servers"]["gh"]["url"]) is not None
    _run(base_env, VAR, "show", "--effective")
    # the stored form is the reference, readable as before
    stored = _run(base_env, VAR, "get", "mcp.servers.gh.url", "--json")
    assert _json_value(stored) == "https://bot:${GH_PW}@mcp.example/sse"


def test_a_secret_shaped_free_form_key_from_env_is_masked(base_env: dict[str, str]) -> None:
    got = _run(base_env, ENV_FREEFORM, "get", "channels.telegram.mybot", "--effective",
               "--json")
    account = _json_value(got)
    assert parse_mask(account["bot_password"]) is not None
    assert account["chat_name"] == "ops-room"  # a plain value in the same table: shown
    shown = json.loads(_run(base_env, ENV_FREEFORM, "show", "--effective", "--json").stdout)
    assert parse_mask(shown["channels"]["telegram"]["mybot"]["bot_password"]) is not None
    _run(base_env, ENV_FREEFORM, "show", "--effective")


def test_plain_values_from_env_and_flags_are_shown_as_before(base_env: dict[str, str]) -> None:
    env = {"MOLTIS_PROVIDERS__OPENAI__BASE_URL": "https://proxy.example/v1",
           "MOLTIS_SERVER__PORT": "4242"}
    got = _run(base_env, env, "get", "providers.openai.base_url", "--effective", "--json")
    assert _json_value(got) == "https://proxy.example/v1"
    shown = json.loads(_run(base_env, env, "show", "--effective", "--json").stdout)
    assert shown["server"]["port"] == 4242
    assert shown["providers"]["openai"]["base_url"] == "https://proxy.example/v1"
    # a ${VAR} substituted without credentials stays readable
    plain = _run(base_env, {"GH_PW": "${NOT_A_SECRET}"}, "get", "mcp.servers.gh.url",
                 "--effective", "--json")
    assert _json_value(plain) == "https://bot:${NOT_A_SECRET}@mcp.example/sse"
