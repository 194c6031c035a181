"""Issue 14 acceptance: the leak scan over the new secret paths.

Secrets placed where issue 14 found plaintext — a free-form channel token, a sealed
`[env]` value used through `${VAR}`, an invalid table-valued environment override,
secret-shaped unknown keys (config and key file), a URL password in an unknown
section — must not appear in the database, its WAL and SHM, a bundle, a masked
export, the logs at every verbosity, or any command's human or `--json` output and
error messages. (Migration backups and retired key files belong to the migrate work.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.cli.app import run
from tests.leak_scan import assert_clean, cli_text, scan_commands, scan_exports_and_files

LEAKS = {
    "channel": "tok-LEAKSCAN-channel-4be1",
    "env": "LEAKSCAN-sealed-env-77a0",
    "override": "sk-LEAKSCAN-override-19cd",
    "unknown": "sk-LEAKSCAN-unknown-5e02",
    "keyfile": "tok-LEAKSCAN-keyfile-8f3a",
    "url": "LEAKSCANURLPW6d1",
    "typo": "sk-LEAKSCAN-typo-0a9b",
}

COMMANDS: list[tuple[str, ...]] = [
    ("show",), ("show", "--effective"), ("get", "channels.telegram.bot1.token"),
    ("get", "identity.name", "--effective"), ("get", "mystery", "--effective"),
    ("get", "channels", "--effective"), ("log",), ("log", "--limit", "50"), ("blame",),
    ("diff", "0"), ("export",), ("export", "--format", "json"), ("providers", "list"),
    ("providers", "effective"), ("check",), ("verify",), ("key", "where"),
    ("watch", "--after", "0", "--count", "3"), ("get", "no.such.key"),
    ("rollback", "--to", "1", "--dry-run"),
]


def _cli(capsys, *args: str) -> str:
    return cli_text(capsys, *args)


def _assert_clean(blob: str | bytes, where: str) -> None:
    assert_clean(blob, where, LEAKS)


def test_no_new_path_secret_reaches_disk_logs_or_output(capsys, monkeypatch, caplog,
                                                         tmp_path):
    for args in (["set", "channels.telegram.bot1.token", LEAKS["channel"]],
                 ["set", "env.BAR", LEAKS["env"]], ["set", "identity.name", "${BAR}"],
                 ["set", "mystery.api_key", LEAKS["unknown"], "--allow-unknown"],
                 ["set", "mystery.mirror", f"https://u:{LEAKS['url']}@mirror.example/x",
                  "--allow-unknown"],
                 ["set", "providers.openai.apikey", LEAKS["typo"], "--allow-unknown"]):
        assert run(args) == 0, args
    keys = tmp_path / "import.json"
    keys.write_text(json.dumps({"openai": {"apiKey": "sk-x-0000", "token": LEAKS["keyfile"]}}))
    from ledger.ops.open_store import open_ledger
    from tests.conftest import run as arun

    data = Path(__import__("os").environ["MOLTIS_DATA_DIR"])
    store = open_ledger(str(data / "moltis.db"))
    arun(store.providers.import_keys(json.loads(keys.read_text())))
    arun(store.close())
    capsys.readouterr()
    monkeypatch.setenv("MOLTIS_PROVIDERS__OPENAI",
                       json.dumps({"api_key": LEAKS["override"], "models": 1}))

    scan_commands(capsys, caplog, COMMANDS, LEAKS)
    scan_exports_and_files(capsys, tmp_path, data, LEAKS)

    # and the gateway still gets every value
    monkeypatch.delenv("MOLTIS_PROVIDERS__OPENAI")
    store = open_ledger(str(data / "moltis.db"))
    eff = arun(store.load_effective(env={}))
    assert eff.channels.telegram["bot1"]["token"] == LEAKS["channel"]
    assert eff.identity.name == LEAKS["env"]
    arun(store.close())


@pytest.mark.parametrize("flag", ["-v", "-vv"])
def test_env_override_warning_is_clean_at_every_verbosity(capsys, monkeypatch, flag):
    run(["set", "server.port", "8080"])
    monkeypatch.setenv("MOLTIS_PROVIDERS__OPENAI", json.dumps({"api_key": LEAKS["override"],
                                                               "models": "x"}))
    text = _cli(capsys, flag, "show", "--effective")
    assert "MOLTIS_PROVIDERS__OPENAI" in text
    _assert_clean(text, flag)
