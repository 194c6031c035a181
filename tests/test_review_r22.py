"""Review r22: attacking the YAML reading as serde_yaml 0.9.34 reads it
(`ledger.files.yaml_read`, 7254f30), the moltis.yaml writer's key lookup (48a339e) and
the reading notes `check --file` reports, with real Moltis-shaped files, CLI processes
and the file store.

Each test is a finding, marked xfail(strict=True) until it is fixed. serde_yaml facts
cite dtolnay/serde-yaml 0.9.34 `src/de.rs`: `visit_scalar` (an explicit core tag decides
before the plain-scalar rules), `visit_untagged_scalar`, `parse_f64` (no
`digits_but_not_number` check: `deserialize_f64` reads `01` as 1.0, never `0x0`),
`MapAccess::next_key_seed` (a key is read with the value's seed: `deserialize_any` when
serde buffers the table as `Content`). Moltis facts cite zuisong/moltis crates/config/src.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.limited_read import read_within
from tests.migrated_site import (
    check_file,
    cli_process,
    file_site,
    migrate_file_site,
    readings_with_a_comment,
)

# CLI processes, memory-limited reads and YAML files as operators write them: run by
# .ci/run
pytestmark = pytest.mark.torture


def _site(tmp_path: Path, name: str, text: str) -> dict[str, str]:
    return file_site(tmp_path, name, text, "tester@r22")


# ---------------------------------------------------------------------------------
# The moltis.yaml writer: a key the reader gives its text, the round-trip tree a number


PHONE_KEYED = """\
server:
  port: 13131
channels:
  telephony:
    0612345678:
      provider: twilio
      auth_token: "r22-twilio-auth-SECRET"
"""


def test_migrate_masks_the_token_of_an_account_keyed_by_a_leading_zero_number(
        tmp_path: Path) -> None:
    """What I did: moltis.yaml whose telephony account is keyed by its phone number
    (`channels.telephony.0612345678`, a French number: "keyed by account ID",
    runtime.rs), holding an `auth_token` (a free-form secret), then `migrate`.
    What happened: the import and the backend switch are done, then migrate exits 1 with
    "internal error: the file without its secrets would not parse (... duplicate key
    "0612345678" ...)", every later migrate the same: the Twilio token stays in clear in
    moltis.yaml. The file store cannot edit below that account either. What should
    happen: exit 0 and the token masked, as 48a339e does for `123456789:`. Mechanism:
    `yaml_edit._key_in` finds a key by serde's value of its text (`serde_plain`), but
    "0612345678" is text to serde (`digits_but_not_number`) while ruamel's round-trip
    tree keys it by the int 612345678 (YAML 1.2), so a second, quoted key is added;
    the same for `1_000:`, `0x_1:` or a date-like key. (Two keys one int to ruamel,
    `1:` and `01:`, make every edit of the file fail at the round-trip load.)"""
    env = _site(tmp_path, "moltis.yaml", PHONE_KEYED)
    done, text = migrate_file_site(env)
    assert (done.returncode, "r22-twilio-auth-SECRET" in text) == (0, False), done.stderr


def test_the_file_store_edits_a_yaml_file_holding_an_e164_numbered_account(
        tmp_path: Path) -> None:
    """What I did: moltis.yaml with a telephony account keyed by its E.164 number
    (`+14155550100:`), served by FileConfigStore (Moltis's own behaviour: no ledger),
    and an `update_raw` changing only `server.port`. What happened: StoreError "internal
    error: editing the file would also change channels.telephony."+14155550100",
    channels.telephony.14155550100.provider ...; nothing was written": no edit of any
    key of this file is possible (and `migrate` of such a file with an `auth_token`
    exits 1 the same way, the token left in clear). What should happen: the port is
    written, the account's key kept as "+14155550100" (serde_yaml reads the key as its
    text, and so does the reader since 7254f30; at eb2f88c the file was refused whole at
    read). Mechanism: `yaml_edit.edit_yaml` dumps ruamel's round-trip tree, which holds
    the key as an int and writes it back without its sign (also `-0:` as `0:`, `True:`
    as `true:`, `~:` as `null:`, `0e1:` as `0e0:`): every key whose text is not the one
    ruamel would write for its value is renamed by any edit of the file."""
    from ledger.stores.file_store import FileConfigStore

    path = tmp_path / "moltis.yaml"
    path.write_text("server:\n  port: 13131\nchannels:\n  telephony:\n    +14155550100:\n"
                    "      provider: twilio\n", encoding="utf-8")

    def move_port(cfg: object) -> None:
        cfg.server.port = 13132  # type: ignore[attr-defined]

    asyncio.run(FileConfigStore(path).update_raw(move_port, actor="tester@r22"))
    doc = asyncio.run(FileConfigStore(path).raw_document())
    assert (doc["server"]["port"], list(doc["channels"]["telephony"])) == (
        13132, ["+14155550100"])


# ---------------------------------------------------------------------------------
# Plain scalars serde_yaml reads as text that the reader cannot


def test_a_long_digit_string_is_text_and_does_not_crash_every_command(
        tmp_path: Path) -> None:
    """What I did: moltis.yaml with a telegram account whose `note` is an unquoted run of
    5000 digits (a pasted blob), then `get server.port` and `check --file`.
    What happened: both exit 1 with "error: unexpected ValueError: Exceeds the limit
    (4300 digits) for integer string conversion": every command (and the gateway's
    open_store, which reads the config file first) is down. What should happen: the
    value is text, as Moltis reads it (serde_yaml `visit_int` finds no int, `parse_f64`
    gives inf, which is not finite, so the scalar stays a string), and `get` prints
    13131. Mechanism: `yaml_read._integer` calls `int(body)` on any run of digits before
    `_in_range` (Python refuses decimal strings above 4300 digits); load_yaml catches
    only YAMLError."""
    body = "1" * 5000
    env = _site(tmp_path, "moltis.yaml",
                f"server:\n  port: 13131\nchannels:\n  telegram:\n    bot:\n"
                f"      note: {body}\n")
    got = cli_process(env, "check", "--file", str(tmp_path / "config" / "moltis.yaml"))
    assert "unexpected" not in got.stderr and got.returncode in (0, 1), got.stderr
    from ledger.stores.config_file import read_config_file

    doc = read_config_file(tmp_path / "config" / "moltis.yaml")
    assert doc["channels"]["telegram"]["bot"]["note"] == body


def test_an_explicit_str_tag_keeps_a_number_text(tmp_path: Path) -> None:
    """What I did: moltis.yaml with `!!str` on plain numbers, YAML's own way to say
    "text": a telegram account's `allowed_users: [!!str 123456789]` and an OpenAI-
    compatible local server's `api_key: !!str 1234567890`; `migrate`, `get`, and
    `check --file`. What happened: the ledger holds the number 123456789 (the gateway
    gets an int where Moltis reads "123456789"), and check says the api_key is an error
    ("Moltis refuses it and would not load the file; quote it"), though Moltis loads it.
    What should happen: both are text, no error: serde_yaml `visit_scalar` reads a
    scalar tagged `tag:yaml.org,2002:str` with `visit_str` (only an untagged plain
    scalar goes to `visit_untagged_scalar`), in a buffered provider entry too.
    Mechanism: `yaml_read._as_serde_reads` applies `serde_plain` to every plain-style
    node, without asking whether its tag was given explicitly."""
    env = _site(tmp_path, "moltis.yaml",
                "server:\n  port: 13131\nchannels:\n  telegram:\n    bot:\n"
                "      allowed_users: [!!str 123456789]\n"
                "providers:\n  openai:\n    api_key: !!str 1234567890\n"
                "    base_url: http://127.0.0.1:8000/v1\n")
    report = check_file(env, tmp_path / "config" / "moltis.yaml")
    errors = [p for p in report["problems"] if p["severity"] == "error"]
    from ledger.stores.config_file import read_config_file

    doc = read_config_file(tmp_path / "config" / "moltis.yaml")
    assert (doc["channels"]["telegram"]["bot"]["allowed_users"], errors) == (
        ["123456789"], []), report


def test_a_plain_equals_sign_is_text(tmp_path: Path) -> None:
    """What I did: moltis.yaml with an MCP server whose `args` end in a bare `=`
    (`args: [--define, NAME, =]`), then `check --file`. What happened: the file is
    refused, "invalid YAML at line 7 ...: could not determine a constructor for the tag
    'tag:yaml.org,2002:value'": migrate, the file store and every command refuse it.
    What should happen: "=" is text, as serde_yaml reads it (libyaml resolves no tag;
    `visit_untagged_scalar`: not null, bool, int or float, so a string), and as
    yaml_read's docstring says ("everything else is text"). Mechanism: ruamel's
    resolver gives a plain `=` the YAML 1.1 `value` tag, which `_constructor` (which
    maps `merge` to text for `<<`) does not map; pre-existing at eb2f88c."""
    env = _site(tmp_path, "moltis.yaml",
                "server:\n  port: 13131\nmcp:\n  servers:\n    x:\n      command: tool\n"
                "      args: [--define, NAME, =]\n")
    report = check_file(env, tmp_path / "config" / "moltis.yaml")
    assert report.get("ok") is True, report
    from ledger.stores.config_file import read_config_file

    doc = read_config_file(tmp_path / "config" / "moltis.yaml")
    assert doc["mcp"]["servers"]["x"]["args"] == ["--define", "NAME", "="]


def test_a_float_field_reads_a_leading_zero_number_as_moltis_does(tmp_path: Path) -> None:
    """What I did: moltis.yaml with `memory: vector_weight: 01` (a Fraction, Rust f32),
    then `migrate`. What happened: refused, exit 1, "memory.vector_weight: Expected
    float, got str": nothing imported (check: invalid-value error). What should happen:
    imported as 1.0, as Moltis loads it: serde_yaml `deserialize_f64` parses the plain
    scalar with `parse_f64` alone, which has no `digits_but_not_number` test (only the
    untagged reading and the integer parsers have one), so `01` is 1.0 there. The other
    way round, `keyword_weight: 0x0` is refused by Moltis (`parse_f64` takes no hex) and
    read as 0 by the ledger. Mechanism: `yaml_read.serde_plain` is `visit_untagged_scalar`
    (a `deserialize_any` reading) for every field; `config_file.parse_config` corrects
    it only for fields that take text."""
    env = _site(tmp_path, "moltis.yaml",
                "server:\n  port: 13131\nmemory:\n  vector_weight: 01\n")
    done = cli_process(env, "migrate")
    assert done.returncode == 0, done.stderr
    got = cli_process(env, "--json", "get", "memory.vector_weight")
    assert json.loads(got.stdout)["value"] == 1.0, got.stderr


def test_an_overflowing_toml_float_reads_the_same_whatever_a_comment_says(
        tmp_path: Path) -> None:
    """What I did: moltis.toml with a telegram account `retry_backoff = 1e400`, read
    twice: as it is, and with a comment `# see the info channel` above it.
    What happened: the first is refused ("nan and inf are not supported"); the second is
    read, the key left out with a non-finite warning ("Moltis reads it as null there"),
    and migrate imports it. What should happen: the same reading both times; refused, as
    Moltis refuses the file: its config crate reads TOML with toml 0.8 / toml_edit 0.22,
    whose `float` parser verifies `*f != f64::INFINITY` (parser/numbers.rs), so `1e400`
    is not a float there. Mechanism: `config_file.parse_config` looks for non-finite
    floats only when the bytes contain "inf" or "nan", and tomllib makes `1e400` an inf
    without either; with the walk, `_leave_out_non_finite` drops it from a free-form
    value. (Review r21 found this for YAML, where 7254f30 fixed it by reading `1e400` as
    text; the TOML side still depends on a comment.)"""

    body = "[channels.telegram.bot]\nretry_backoff = 1e400\n"
    readings = readings_with_a_comment(tmp_path, "moltis.toml", body)
    assert readings[0] == readings[1], readings


# ---------------------------------------------------------------------------------
# Tables serde buffers: a key is read as the value is


def test_a_numeric_key_below_a_flattened_table_is_an_error_in_check(tmp_path: Path) -> None:
    """What I did: moltis.yaml with a Matrix account keyed `1:` (`channels.matrix.1`,
    Matrix has no named field: it lands in the flattened `extra` map, runtime.rs:319)
    and a provider's `model_overrides` keyed by a number (`providers.openai.
    model_overrides.4`), then `check --file --json`. What happened: "ok", no problem;
    migrate imports both. What should happen: an error on each, as for a number in a
    text field of a provider entry (refused_texts): Moltis does not start with this file.
    serde buffers a flattened table as `Content`, and serde_yaml reads a map key with the
    seed it is given (`MapAccess::next_key_seed`): `deserialize_any`, so the plain `1`
    is `Content::U64`, and `HashMap<String, _>` (or `serde_json::Value`'s key) then
    refuses it ("invalid type: integer `1`, expected a string"). Mechanism: `_settle`
    gives every `_Plain` key its text and records nothing, so `text_reading` is never
    asked about keys."""
    env = _site(tmp_path, "moltis.yaml",
                "server:\n  port: 13131\nchannels:\n  matrix:\n    1:\n"
                "      homeserver: https://matrix.example.org\n"
                "providers:\n  openai:\n    model_overrides:\n      4:\n"
                "        context_window: 8000\n")
    report = check_file(env, tmp_path / "config" / "moltis.yaml")
    errors = {p["path"] for p in report["problems"] if p["severity"] == "error"}
    assert {"channels.matrix.1", "providers.openai.model_overrides.4"} <= errors, report


# ---------------------------------------------------------------------------------
# Errors of the reader


def test_a_numeric_key_given_twice_is_named_by_its_text(tmp_path: Path) -> None:
    """What I did: moltis.yaml where a telegram account keyed by the bot's numeric ID is
    pasted twice (`123456789:` two times), then `check --file`. What happened: "invalid
    YAML at line 5, column 5: duplicate key "<ledger.files.yaml_read._Plain object at
    0x7f...>": given twice in one table": the operator is not told which key. What
    should happen: `duplicate key "123456789"`. Mechanism: `load_yaml` takes the key from
    ruamel's DuplicateKeyError text, which formats the key object, and `_Plain` has no
    `__str__`. (The message also says "Moltis refuses that too", which holds for a
    struct's fields, not for a `HashMap` such as `channels.telegram` or a
    `serde_json::Value`, where serde keeps the last entry.)"""
    env = _site(tmp_path, "moltis.yaml",
                "channels:\n  telegram:\n    123456789:\n      enabled: true\n"
                "    123456789:\n      enabled: false\n")
    got = cli_process(env, "check", "--file", str(tmp_path / "config" / "moltis.yaml"))
    out = got.stdout + got.stderr
    # fixed as serde reads a map: the last entry kept, the key named by its text
    assert "channels.telegram.123456789" in out and "given twice" in out, out
    assert "object at" not in out, out


def test_a_tagged_quoted_secret_is_refused_without_printing_it(tmp_path: Path) -> None:
    """What I did: moltis.yaml with `providers.openai.api_key: !!int "sk-live-..."` (a
    stray tag left by a YAML tool), then `check --file` and `get server.port`.
    What happened: "error: unexpected ValueError: invalid literal for int() with base
    10: 'sk-live-r22SECRETkey'": the key in clear on stderr, exit 1 as an internal error
    (`!!float` and `!!bool` the same, lower-cased). What should happen: a parse error
    naming the file and line, never the value (load_yaml's own promise: "ParseError names
    the file and line, never a value"). Mechanism: `_as_serde_reads` hands a quoted node
    to ruamel's int/float/bool constructor, whose ValueError/KeyError is not a
    YAMLError, so `load_yaml` lets it through. (Pre-existing at eb2f88c; in the
    constructor this change rewrote.)"""
    env = _site(tmp_path, "moltis.yaml",
                'server:\n  port: 13131\nproviders:\n  openai:\n'
                '    api_key: !!int "sk-live-r22SECRETkey"\n')
    check = cli_process(env, "check", "--file", str(tmp_path / "config" / "moltis.yaml"))
    get = cli_process(env, "get", "server.port")
    out = check.stdout + check.stderr + get.stdout + get.stderr
    assert "r22SECRETkey" not in out.replace("r22secretkey", "r22SECRETkey"), out
    assert "unexpected" not in out, out


# ---------------------------------------------------------------------------------
# The alias budget, in a table the schema types


def test_an_alias_heavy_typed_table_is_read_in_the_memory_the_old_reader_needed(
        tmp_path: Path) -> None:
    """What I did: a 15 KB moltis.yaml: `mcp.servers` with 1000 entries, each an alias
    of one server whose `args` (list[str], a typed table) holds 990 plain `1`s (990k
    values, inside MAX_YAML_NODES), read with `read_config_file` in a process limited to
    200 MiB of address space. What happened: MemoryError (with no limit: 222 MB peak RSS
    and 5 s; the reader at eb2f88c: 27 MB and 0.6 s, and it reads the file under a 120
    MiB limit). What should happen: read (or refused as "not a configuration file") in
    the memory it needed before, as 7254f30 says ("an alias-heavy file reads in the
    memory it did before"): it fixed only the unknown-key case (review r21). Mechanism:
    `_settle` stores a path tuple and the text of every plain scalar of a typed table in
    `plain`; `parse_config` then calls `text_reading` and `_put` for each, and keeps
    another path per value in `notes.texts`."""
    args = "[" + ",".join(["1"] * 990) + "]"
    lines = ["mcp:", "  servers:", f"    s0: &s {{command: x, args: {args}}}"]
    lines += [f"    s{i}: *s" for i in range(1, 1000)]
    path = tmp_path / "moltis.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    got = read_within(path, 200)
    assert (got.returncode, got.stdout.strip()) == (0, "read"), got.stderr[-500:]

