"""Issue 14: output safety. Every human output escapes control, C1 and bidi characters
visibly; JSON output stays valid JSON; `watch` prints one line per event; secrets that
reach the effective config through `${VAR}` from a sealed `[env]` entry, free-form
channel maps or invalid environment overrides never reach any output.

The CLI runs in-process (`ledger.cli.app.run`), its output captured by pytest.
"""

from __future__ import annotations

import json
import logging

import pytest

from ledger.cli.app import run

ESC_REASON = "evil\x1b]0;pwned\x07\x1b[2K\x9b31m\nseq 99  2026-01-01 00:00:00Z  root  cli  forged"
BIDI_ACTOR = "bob\u202eevil"
RAW_BAD = ("\x1b", "\x07", "\x9b", "\u202e")
CHANNEL_TOKEN = "tok-CHANNEL-SECRET-5e1d0a"
ENV_SECRET = "sealed-ENV-SECRET-77f3b2"
OVERRIDE_SECRET = "sk-OVERRIDE-SECRET-0c9e4d"


def cli(capsys, *args: str, code: int = 0) -> tuple[str, str]:
    capsys.readouterr()
    assert run(list(args)) == code, capsys.readouterr()
    captured = capsys.readouterr()
    return captured.out, captured.err


def assert_clean(text: str, where: str) -> None:
    for ch in RAW_BAD:
        assert ch not in text, f"raw {ch!r} reached {where}"


def test_escape_shows_every_unsafe_character_visibly():
    from ledger.core.escape import escape, json_safe

    assert escape("a\x1b[2Kb") == "a\\x1b[2Kb"
    assert escape("r\u202et") == "r\\u202et"
    assert escape("x\x9by\x00z\x7f") == "x\\x9by\\x00z\\x7f"
    assert escape("one\ntwo") == "one\\ntwo"
    assert escape("one\ntwo", keep_newlines=True) == "one\ntwo"
    assert escape("plain ünïcode ok") == "plain ünïcode ok"
    text = json_safe(json.dumps({"v": "a\u202e\x9b\x1b\u2028"}, ensure_ascii=False))
    assert json.loads(text) == {"v": "a\u202e\x9b\x1b\u2028"}
    assert_clean(text, "json_safe")


@pytest.fixture
def hostile(capsys):
    """A ledger whose events carry terminal sequences in the reason and a bidi override
    in the actor (stored as given: audit fidelity)."""
    cli(capsys, "set", "server.port", "8080", "--reason", ESC_REASON)
    cli(capsys, "--actor", BIDI_ACTOR, "set", "identity.name", "x\x1b[2Jy")
    return capsys


def test_log_blame_diff_get_show_escape_terminal_sequences(hostile):
    for args in (["log"], ["blame"], ["blame", "server"], ["diff", "0"],
                 ["get", "identity.name"], ["show"], ["show", "--effective"],
                 ["get", "identity.name", "--effective"]):
        out, err = cli(hostile, *args)
        assert_clean(out + err, " ".join(args))
    out, _ = cli(hostile, "log")
    assert "\\x1b]0;pwned\\x07" in out and "bob\\u202eevil" in out


def test_json_output_is_valid_and_keeps_the_values(hostile):
    out, _ = cli(hostile, "log", "--json")
    assert_clean(out, "log --json")
    events = json.loads(out)["events"]
    assert {e["reason"] for e in events} >= {ESC_REASON}
    assert {e["actor"] for e in events} >= {BIDI_ACTOR}


def test_watch_prints_exactly_one_line_per_event(hostile):
    out, err = cli(hostile, "watch", "--after", "0", "--count", "2")
    assert_clean(out + err, "watch")
    lines = out.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("seq 1 ") and lines[1].startswith("seq 2 ")
    out, _ = cli(hostile, "watch", "--after", "0", "--count", "2", "--json")
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2]


def test_errors_escape_the_bad_input(capsys):
    out, err = cli(capsys, "get", "no\x1b[2Jsuch.key\u202e", code=1)
    assert_clean(out + err, "error message")
    assert "\\x1b" in err


def test_free_form_channel_token_is_masked_in_every_output(capsys):
    """Findings 1 and 9: a channel token is sealed and shown as a mask everywhere."""
    cli(capsys, "set", "channels.telegram.bot1.token", CHANNEL_TOKEN)
    outputs = []
    for args in (["show"], ["show", "--json"], ["show", "--effective"],
                 ["show", "--effective", "--json"], ["get", "channels.telegram.bot1.token"],
                 ["get", "channels.telegram", "--effective", "--json"], ["log"],
                 ["log", "--json"], ["blame"], ["export"]):
        out, err = cli(capsys, *args)
        outputs.append(out + err)
        assert CHANNEL_TOKEN not in out + err, args
    eff = json.loads(cli(capsys, "show", "--effective", "--json")[0])
    token = eff["channels"]["telegram"]["bot1"]["token"]
    assert isinstance(token, str) and token.startswith("<secret fp:"), token


def test_var_from_sealed_env_is_masked_but_the_gateway_gets_it(capsys):
    """Finding 2: `${BAR}` from a sealed [env] entry is masked in every display, and
    source_metadata says so; load_effective still substitutes it."""
    cli(capsys, "set", "env.BAR", ENV_SECRET)
    cli(capsys, "set", "identity.name", "${BAR}")
    for args in (["show", "--effective"], ["show", "--effective", "--json"],
                 ["get", "identity.name", "--effective"],
                 ["get", "identity.name", "--effective", "--json"],
                 ["get", "identity", "--effective", "--json"], ["show"], ["export"]):
        out, err = cli(capsys, *args)
        assert ENV_SECRET not in out + err, args
    got = json.loads(cli(capsys, "get", "identity.name", "--effective", "--json")[0])
    assert got["value"].startswith("<secret fp:")
    assert got["source"]["sealed_env"] == ["BAR"]

    from ledger.ops.open_store import open_store
    from tests.conftest import run as arun

    store = open_store(backend="sqlite")
    try:
        assert arun(store.load_effective()).identity.name == ENV_SECRET
        meta = arun(store.source_metadata())
        assert meta["identity.name"].sealed_env == ("BAR",)
    finally:
        arun(store.close())


def test_invalid_table_override_warning_never_prints_the_key(capsys, monkeypatch, caplog):
    """Finding 6: an ignored table-valued override does not quote its value."""
    cli(capsys, "set", "server.port", "8080")
    monkeypatch.setenv("MOLTIS_PROVIDERS__OPENAI",
                       json.dumps({"api_key": OVERRIDE_SECRET, "models": 5}))
    monkeypatch.setenv("MOLTIS_SERVER__PORT", f"not-a-port-{OVERRIDE_SECRET}")
    with caplog.at_level(logging.DEBUG):
        for args in (["show", "--effective"], ["show", "--effective", "--json"],
                     ["get", "server.port", "--effective", "--json"], ["check"],
                     ["-vv", "show", "--effective"]):
            out, err = _any_code(capsys, *args)
            assert OVERRIDE_SECRET not in out + err, args
    logged = " ".join(repr(r.__dict__) for r in caplog.records)
    assert OVERRIDE_SECRET not in logged
    assert "MOLTIS_PROVIDERS__OPENAI" in logged  # the warning itself is given


def _any_code(capsys, *args: str) -> tuple[str, str]:
    capsys.readouterr()
    run(list(args))
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_log_lines_escape_values(capsys):
    """Logs at every verbosity go through the same escaping."""
    cli(capsys, "set", "server.port", "8080")
    out, err = cli(capsys, "-vv", "--actor", "a\u202eb\x9b", "set", "server.port", "8081",
                   "--reason", "r\x1b]0;t\x07")
    assert_clean(out + err, "-vv log lines")
    assert "a\\u202eb\\x9b" in err  # the appended line names the actor, escaped
