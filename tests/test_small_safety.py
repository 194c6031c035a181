"""Small safety findings of issue 14's closing note:

* one escaping form in every human output: `diff` (and every place that quotes a value,
  JSON-style) showed a control character as `\\u001b` where every other output shows
  `\\x1b`; the hostile-text torture's characters (C0 without NUL, DEL, C1, bidi,
  separators) now look the same in every command;
* lock files are removed after a file-store write (and the removal cannot let two
  writers in at once: real processes below), so an operator's config dir holds only
  their own files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.core.escape import UNSAFE_CHARS, escape
from ledger.core.value_text import literal, value_text
from ledger.files.safe_io import locked
from tests.conftest import run
from tests.operator import invoke
from tests.torture.test_hostile_text import HOSTILE

REPO = Path(__file__).resolve().parents[1]
# every hostile character and sequence of the torture generator, NUL excluded (refused
# at input); a newline would make `get` print two lines, which is not the point here
VALUE = "Atlas" + "".join(h for h in HOSTILE if h != "\n") + "end"
REASON = "Why" + "".join(h for h in HOSTILE if h != "\n")
MODELS = ["gpt\x1b[2J", "m\x9b\u202e"]
SHOWN = escape(VALUE)
JSON_STYLE = ("\\u001b", "\\u0007", "\\u0008", "\\b", "\\f", "\\u007f")


def test_the_escaping_form_is_visible_and_never_json_style():
    assert "\\x1b" in SHOWN and "\\x9b" in SHOWN and "\\u202e" in SHOWN
    assert literal(VALUE) == f'"{SHOWN}"'
    assert value_text(MODELS) == f'["{escape(MODELS[0])}", "{escape(MODELS[1])}"]'
    # quotes and backslashes still read as typed, and a typed "\x1b" (four characters)
    # differs from the character
    assert literal('a"b\\x1b') == '"a\\"b\\\\x1b"'
    assert (value_text({"k": [1, 2.5, None, True, "x\x07"]})
            == '{"k": [1, 2.5, null, true, "x\\x07"]}')


HUMAN: list[tuple[str, ...]] = [
    ("log",), ("log", "--limit", "2"), ("blame",), ("blame", "identity.name"), ("diff", "0"),
    ("diff", "1"), ("show",), ("show", "--at", "1"), ("show", "--effective"),
    ("get", "identity.name"), ("get", "identity.name", "--effective"),
    ("get", "keys:openai.models"), ("providers", "list"), ("providers", "effective"),
    ("watch", "--after", "0", "--count", "3"),
]


def test_every_human_output_shows_control_c1_and_bidi_characters_one_way(tmp_path):
    """Each command that shows the value shows it exactly as `escape` does (no raw
    character, no JSON-style `\\u001b`), and --json gives the value back exactly."""
    def cli(*args: str) -> tuple[str, str]:
        got = invoke(list(args), cwd=tmp_path, env={"COLUMNS": "400"})  # no wrapping
        assert got.code == 0, (args, got)
        return got.out, got.err

    cli("set", "identity.name", VALUE, "--reason", REASON)
    cli("providers", "set", "openai", "--models", ",".join(MODELS))
    cli("set", "server.port", "8081", "--reason", "r2")
    showing = reasons = models = 0
    for args in HUMAN:
        out, err = cli(*args)
        text = out + err
        raw = {c for c in text if c in UNSAFE_CHARS and c != "\n"}
        assert not raw, f"{args}: raw {sorted(map(repr, raw))}"
        for form in JSON_STYLE:
            assert form not in text, f"{args}: JSON-style {form} in {text!r}"
        if "Atlas" in text:
            assert SHOWN in text, f"{args}: {text!r}"
            showing += 1
        if "Why" in text:
            assert escape(REASON) in text, f"{args}: {text!r}"
            reasons += 1
        if "gpt" in text:
            assert escape(MODELS[0]) in text and escape(MODELS[1]) in text, (args, text)
            models += 1
    assert showing == 8  # log, diff, show (3), get (2), watch
    assert reasons >= 4  # log, blame (2), watch
    assert models >= 3  # log, diff, get of the list
    out, _ = cli("--json", "get", "identity.name")
    assert json.loads(out)["value"] == VALUE


# -- lock files --------------------------------------------------------------------------

def test_a_file_backend_set_leaves_only_the_operators_files(tmp_path):
    """`ls` of the config dir after writes on the file backend (what the gateway opens
    with `[config] backend = "file"`: `open_store()`, the CLI's `set` goes to the
    ledger): moltis.toml, and provider_keys.json once a key was set; no `.lock` file
    and no temp file."""
    from ledger import open_store
    from ledger.stores.file_providers import FileProviderStore

    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "moltis.toml").write_text('[config]\nbackend = "file"\n\n[server]\nport = 8080\n')
    store = open_store(config_dir=config, data_dir=tmp_path / "data")
    run(store.update_raw(lambda c: setattr(c.server, "port", 9090)))
    assert sorted(os.listdir(config)) == ["moltis.toml"]
    run(FileProviderStore(config / "provider_keys.json", config_store=store).set(
        "openai", api_key="sk-LOCKTEST-1"))
    assert sorted(os.listdir(config)) == ["moltis.toml", "provider_keys.json"]
    assert "port = 9090" in (config / "moltis.toml").read_text()
    run(store.close())


def test_the_lock_file_exists_only_while_held_and_is_private(tmp_path):
    target = tmp_path / "moltis.toml"
    with locked(target, wait=False):
        lock = tmp_path / "moltis.toml.lock"
        assert lock.is_file() and (lock.stat().st_mode & 0o777) == 0o600
        with pytest.raises(Exception, match="another writer holds"), locked(target, wait=False):
            pass
    assert not (tmp_path / "moltis.toml.lock").exists()
    # a lock file left by a writer that was killed while holding it is used and removed
    (tmp_path / "moltis.toml.lock").write_text("")
    with locked(target, wait=False):
        pass
    assert os.listdir(tmp_path) == []


COUNTER_WORKER = """
import sys
from pathlib import Path
from ledger.files.safe_io import locked
path, rounds = Path(sys.argv[1]), int(sys.argv[2])
for _ in range(rounds):
    with locked(path, wait=True):
        value = int(path.read_text() or "0")
        path.write_text(str(value + 1))
"""


def test_removing_the_lock_file_lets_no_two_writers_in(tmp_path):
    """Real processes, each a read-increment-write loop under `locked`: with the lock
    file removed after every write, a waiter that was granted the lock on the removed
    file must not write alongside one that created a new file. Any overlap loses an
    increment."""
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs, rounds = 4, 150
    running = [subprocess.Popen([sys.executable, "-c", COUNTER_WORKER, str(counter),
                                 str(rounds)], cwd=REPO) for _ in range(procs)]
    assert [p.wait(timeout=300) for p in running] == [0] * procs
    assert int(counter.read_text()) == procs * rounds
    assert sorted(os.listdir(tmp_path)) == ["counter"]
