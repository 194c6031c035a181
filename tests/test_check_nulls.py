"""`check --file` on a moltis.json / moltis.yaml holding `null`s: the ledger reads a
null as the key not set (review r13), which is what Moltis does for an `Option` field.
For any other field serde refuses the whole file ("invalid type: null, expected u16"),
and Moltis's `discover_and_load` then starts on its defaults: `check` must say so, by
path, rather than call the file fine (it did: the nulls were gone before it looked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.migrated_site import cli_here
from tests.test_review_r13 import _file_site


def _checked(tmp_path: Path, name: str, text: str) -> tuple[int, dict[str, dict[str, str]]]:
    env = _file_site(tmp_path, name, text)
    done = cli_here(env, "--json", "check", "--file", str(tmp_path / "config" / name))
    report = json.loads(done.stdout)
    return done.returncode, {p["path"]: p for p in report["problems"]}


@pytest.mark.parametrize(("name", "text"), [
    ("moltis.json", '{"server": {"port": null, "bind": "127.0.0.1"}, '
                    '"identity": {"name": null}}\n'),
    ("moltis.yaml", "server:\n  port: ~\n  bind: 127.0.0.1\nidentity:\n  name:\n"),
])
def test_a_null_moltis_refuses_is_an_error_naming_the_key(tmp_path: Path, name: str,
                                                          text: str) -> None:
    code, problems = _checked(tmp_path, name, text)
    assert code == 1
    port = problems["server.port"]
    assert (port["severity"], port["kind"]) == ("error", "null-value")
    assert "remove" in port["message"]  # the fix: leave the key out for its default
    assert "identity.name" not in problems  # Option<String>: null is None, as in Moltis


def test_a_null_in_a_free_form_value_is_a_warning(tmp_path: Path) -> None:
    """A channel account is free-form (serde_json::Value): Moltis keeps the null; the
    ledger, whose files are TOML, leaves the key out. Loadable, but not the same."""
    text = '{"channels": {"telegram": {"bot": {"token_env": null, "x": 1}}}}\n'
    code, problems = _checked(tmp_path, "moltis.json", text)
    found = problems["channels.telegram.bot.token_env"]
    assert (found["severity"], found["kind"]) == ("warning", "null-value")
    assert code == 1  # check exits 1 when it reports anything


def test_nulls_inside_a_provider_entry_and_a_whole_null_section(tmp_path: Path) -> None:
    text = '{"providers": {"openai": {"enabled": null, "alias": null}}, "tools": null}\n'
    code, problems = _checked(tmp_path, "moltis.json", text)
    assert code == 1
    assert problems["providers.openai.enabled"]["severity"] == "error"  # bool
    assert "providers.openai.alias" not in problems  # Option<String>
    assert problems["tools"]["severity"] == "error"  # a struct: serde refuses null


def test_a_null_for_an_option_with_a_default_is_a_warning(tmp_path: Path) -> None:
    """`cron.session_retention_days` is `Option<u64>` defaulting to `Some(7)`: a null is
    None to Moltis (no pruning), while the ledger, which cannot store a null, serves the
    default. Moltis loads the file, so a warning naming what to write instead."""
    text = "cron:\n  session_retention_days: ~\nagents:\n  default_preset: null\n"
    code, problems = _checked(tmp_path, "moltis.yaml", text)
    days = problems["cron.session_retention_days"]
    assert (days["severity"], days["kind"]) == ("warning", "null-value")
    assert "7" in days["message"]
    assert problems["agents.default_preset"]["severity"] == "warning"
    assert code == 1
