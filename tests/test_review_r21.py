"""Review r21: attacking the YAML plain-scalar reading (82b1549: an unquoted number or
bool is its text where Moltis's field takes text) and the inf/nan reading (3477018: left
out of a free-form value or an unknown key, refused in a number field or an array) with
real Moltis-shaped files, CLI processes and the file store.

Each test is a finding, marked xfail(strict=True) until it is fixed. serde_yaml 0.9.34
facts cited: `de.rs` `deserialize_str` (any scalar's text), `visit_untagged_scalar`,
`digits_but_not_number` (a leading-zero integer is a string), `parse_f64` (a float that
overflows is not a float: the scalar stays text). Moltis facts cite zuisong/moltis
crates/config/src.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.limited_read import read_within
from tests.migrated_site import (
    cli_here,
    cli_process,
    file_site,
    migrate_file_site,
    readings_with_a_comment,
)

# CLI processes and a memory-limited read of an alias-heavy file: run by .ci/run
pytestmark = pytest.mark.torture


def _site(tmp_path: Path, name: str, text: str) -> dict[str, str]:
    return file_site(tmp_path, name, text, "tester@r21")


# ---------------------------------------------------------------------------------
# Plain scalars: where serde does not call deserialize_str


def test_an_unquoted_number_as_a_provider_key_is_an_error_as_moltis_refuses_the_file(
        tmp_path: Path) -> None:
    """What I did: moltis.yaml with `providers: openai: api_key: 1234567890` (a local
    OpenAI-compatible server that takes any key), then `check --file --json`.
    What happened: a warning (unquoted-text) saying "Moltis reads it as its text"; migrate
    imports "1234567890". What should happen: an error. `ProvidersConfig.providers` is
    `#[serde(flatten)]` (schema/providers.rs:105): serde buffers every provider entry as
    `Content` through `deserialize_any`, where serde_yaml's `visit_untagged_scalar` makes
    the plain scalar an integer, and `Option<Secret<String>>` then refuses an integer
    ("invalid type: integer, expected a string"): Moltis does not start with this file.
    (The same holds for every text field of a provider entry, and for the internally
    tagged `tool_choice`.) The change gives text wherever the schema says `str`, not
    only where serde actually calls `deserialize_str`."""
    env = _site(tmp_path, "moltis.yaml",
                "providers:\n  openai:\n    api_key: 1234567890\n"
                "    base_url: http://127.0.0.1:8000/v1\n")
    got = cli_process(env, "--json", "check", "--file",
                      str(tmp_path / "config" / "moltis.yaml"))
    report = json.loads(got.stdout)
    at = [p for p in report["problems"] if p["path"] == "providers.openai.api_key"]
    assert at and at[0]["severity"] == "error", report


# ---------------------------------------------------------------------------------
# Plain scalars: a free-form value keeps ruamel's number, not serde_yaml's reading


def test_a_leading_zero_number_in_a_channel_account_keeps_its_digits(tmp_path: Path) -> None:
    """What I did: moltis.yaml with a telephony account `from_number: 0612345678` and
    `pin: 0042` (a free-form `serde_json::Value`, runtime.rs:314), `migrate`, then
    `get channels.telephony.office`. What happened: check --file says no problems and the
    ledger holds 612345678 and 42: the leading zeros are gone, and after the switch the
    gateway gets those numbers. What should happen: "0612345678" and "0042", as Moltis
    reads them (serde_yaml `digits_but_not_number`: a leading-zero integer is a string;
    ruamel's YAML 1.2 resolver reads it as an int; the same for `1_000`, `0x_1`, `08`)."""
    env = _site(tmp_path, "moltis.yaml",
                "server:\n  port: 13131\nchannels:\n  telephony:\n    office:\n"
                "      from_number: 0612345678\n      pin: 0042\n")
    done = cli_here(env, "migrate")
    assert done.returncode == 0, done.stderr
    got = cli_process(env, "--json", "get", "channels.telephony.office")
    assert json.loads(got.stdout)["value"] == {"from_number": "0612345678", "pin": "0042"}


# ---------------------------------------------------------------------------------
# Plain scalars: a numeric map key is text for reading, an int for the YAML writers


TELEGRAM_BY_ID = """\
server:
  port: 13131
channels:
  telegram:
    123456789:
      token: "123456789:AAE-r21-bot-token-secret"
      allowed_users: [alice]
"""


def test_migrate_masks_the_token_of_a_telegram_account_keyed_by_its_numeric_id(
        tmp_path: Path) -> None:
    """What I did: moltis.yaml whose telegram account is keyed by the bot's numeric ID
    (`channels.telegram.123456789`, "keyed by account ID", runtime.rs:291), then
    `migrate`. What happened: the import and the backend switch are done, then migrate
    exits 1 with "internal error: the file without its secrets would not parse ...
    duplicate key "123456789"", and every later migrate does the same: the bot token
    stays in clear in moltis.yaml. What should happen: exit 0 and the token masked, as
    for any other account. Mechanism: the reader makes the key the text "123456789"
    (`_settle`), but `yaml_edit.edit_yaml` walks ruamel's round-trip tree, whose key is
    the int 123456789: `node.get("123456789")` misses and a second, quoted key is added.
    (Before the change the file was refused whole, before anything was imported.)"""
    env = _site(tmp_path, "moltis.yaml", TELEGRAM_BY_ID)
    done, text = migrate_file_site(env)
    assert (done.returncode, "AAE-r21-bot-token-secret" in text) == (0, False), done.stderr


def test_the_file_store_edits_a_telegram_account_keyed_by_its_numeric_id(
        tmp_path: Path) -> None:
    """What I did: the same moltis.yaml served by FileConfigStore (Moltis's own
    behaviour: no ledger), `update_raw` adding "bob" to that account's allowed_users.
    What happened: StoreError "internal error: the edited file would not parse ...
    duplicate key "123456789""; nothing can be changed below that account (the read
    accepts the key, the writer cannot find it). What should happen: the edit is written
    and read back. Mechanism as above: `yaml_edit.edit_yaml` looks the text key up in a
    tree keyed by the int."""
    from ledger.stores.file_store import FileConfigStore

    path = tmp_path / "moltis.yaml"
    path.write_text(TELEGRAM_BY_ID, encoding="utf-8")

    def add_bob(cfg: object) -> None:
        cfg.channels.telegram["123456789"]["allowed_users"] = ["alice", "bob"]  # type: ignore[attr-defined]

    asyncio.run(FileConfigStore(path).update_raw(add_bob, actor="tester@r21"))
    doc = asyncio.run(FileConfigStore(path).raw_document())
    assert doc["channels"]["telegram"]["123456789"]["allowed_users"] == ["alice", "bob"]


def test_a_null_map_key_above_an_unquoted_number_is_refused_naming_the_file(
        tmp_path: Path) -> None:
    """What I did: moltis.yaml with an MCP server under a `~` key whose `command` is an
    unquoted number (`mcp: servers: ~: {command: 1}`), then `check --file` and `get`.
    What happened: every command fails with "error: unexpected KeyError: 'None'" (no file,
    no path, exit 1); before the change: "moltis.yaml: mcp.servers: key None is not a
    string". What should happen: a refusal that names the file (or, as serde_yaml reads
    it, the key "~"). Mechanism: `_settle` records the path with `str(key)` ("None") for a
    key it leaves as None (also an explicitly tagged `!!int '3':` key), and
    `config_file._put` then indexes the table by that text."""
    env = _site(tmp_path, "moltis.yaml", "mcp:\n  servers:\n    ~:\n      command: 1\n")
    got = cli_process(env, "check", "--file", str(tmp_path / "config" / "moltis.yaml"))
    assert "KeyError" not in got.stderr, got.stderr
    # fixed as serde_yaml reads it: a map key is its text, "~" (and `command` is text)
    from ledger.stores.config_file import read_config_file

    doc = read_config_file(tmp_path / "config" / "moltis.yaml")
    assert doc["mcp"]["servers"] == {"~": {"command": "1"}}


# ---------------------------------------------------------------------------------
# The alias budget: a copy per alias, and a path per plain scalar


def test_an_alias_heavy_yaml_file_is_read_within_the_memory_the_old_reader_needed(
        tmp_path: Path) -> None:
    """What I did: a 3 KB moltis.yaml (10x10x10x10x10x7 aliases of a list of ten `1`s,
    under unknown keys 50 levels deep: ~900k values, inside MAX_YAML_NODES), read with
    `read_config_file` in a process limited to 400 MiB of address space (what every
    command and the gateway's open_store do at start). What happened: MemoryError (with
    no limit: 507 MB peak RSS and 3.5 s; the reader before the change: 35 MB, 1.4 s, and
    it reads the file under a 300 MiB limit). What should happen: the file is read (or
    refused as "not a configuration file") in the memory the node budget promised.
    Mechanism: `_settle` stores a path tuple per plain scalar in `texts` (and the stack),
    so memory grows with budget x depth, not with the budget; `takes_text` then walks
    the schema for each of them."""
    lines = ["a: &a [1,1,1,1,1,1,1,1,1,1]"]
    for prev, name in zip("abcd", "bcde", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    deep = "".join(f"k{i}:\n" + "  " * (i + 1) for i in range(50))
    lines.append(deep + "f: [" + ",".join(["*e"] * 7) + "]")
    path = tmp_path / "moltis.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    got = read_within(path, 400)
    assert (got.returncode, got.stdout.strip()) == (0, "read"), got.stderr[-500:]


# ---------------------------------------------------------------------------------
# inf and nan


def test_an_overflowing_yaml_float_reads_the_same_whatever_a_comment_says(
        tmp_path: Path) -> None:
    """What I did: a telegram account `retry_backoff: 1e400` in moltis.yaml, read twice:
    as it is, and with a comment `# see the info channel` above it. What happened: the
    first is refused ("nan and inf are not supported", though the file spells neither);
    the second is read, the key left out with a non-finite warning. What should happen:
    the same reading both times (Moltis's is the text "1e400": serde_yaml `parse_f64`
    is None for a float that is not finite, so the plain scalar stays a string).
    Mechanism: `parse_config` looks for non-finite floats only when the bytes contain
    "inf" or "nan" (`data.lower()`), which "info", "finance" or "maintenance" do, while
    ruamel makes `1e400` an inf without either."""

    body = "channels:\n  telegram:\n    bot:\n      retry_backoff: 1e400\n"
    readings = readings_with_a_comment(tmp_path, "moltis.yaml", body)
    assert readings[0] == readings[1], readings


def test_a_nan_in_an_array_of_an_unknown_key_does_not_refuse_the_file(
        tmp_path: Path) -> None:
    """What I did: moltis.toml with a table the ledger's schema does not know (a newer
    Moltis's section) holding `weights = [0.5, nan]`, then `migrate`. What happened:
    refused, "future.weights.1: nan in an array, which Moltis reads as null": nothing
    imported. What should happen: as for any inf or nan in an unknown key (3477018):
    Moltis ignores the key, so the file is imported with the value left out and a
    non-finite warning. Mechanism: `_leave_out_non_finite` refuses any non-finite list
    item before asking whether the schema knows the path."""
    env = _site(tmp_path, "moltis.toml",
                "[server]\nport = 13131\n\n[future]\nweights = [0.5, nan]\n")
    done = cli_process(env, "migrate")
    assert done.returncode == 0, done.stderr
    got = cli_process(env, "get", "server.port")
    assert got.stdout.strip() == "13131", got.stderr


# ---------------------------------------------------------------------------------
# Error messages (pre-existing in `_load_yaml`, in the code this change reworked)


def test_a_provider_key_given_twice_is_refused_without_printing_either_key(
        tmp_path: Path) -> None:
    """What I did: moltis.yaml where `providers.openai.api_key` is given twice (an
    operator pasting the new key under the old one), then `check --file` and `migrate`.
    What happened: both print `found duplicate key "api_key" with value
    "sk-live-...NEW..." (original value: "sk-live-...OLD...")`: both secrets in clear on
    stderr (and in any log that captures it). What should happen: the refusal names the
    file, line and key, never the values (DESIGN: secrets never appear in plaintext in
    logs). Mechanism: `documents._load_yaml` copies ruamel's DuplicateKeyError `problem`,
    which quotes both values, into the ParseError. Not new in this change (69be350 does
    the same); the change only makes a duplicated plain number print as a `_Plain`
    object's repr."""
    env = _site(tmp_path, "moltis.yaml",
                "providers:\n  openai:\n    api_key: sk-live-OLDr21SECRET\n"
                "    api_key: sk-live-NEWr21SECRET\n")
    check = cli_process(env, "check", "--file", str(tmp_path / "config" / "moltis.yaml"))
    migrate = cli_process(env, "migrate")
    out = check.stdout + check.stderr + migrate.stdout + migrate.stderr
    assert "duplicate" in out  # refused, as serde_yaml refuses it
    assert "OLDr21SECRET" not in out and "NEWr21SECRET" not in out, out

