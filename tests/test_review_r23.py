"""Review r23: attacking the fixes of review r22 (7ff0335: the moltis.yaml round-trip
editor's plain keys are text; c63d114: each YAML value read as serde reads it for its
field, explicit tags, notes capped at 100, TOML 1e400 refused) with real Moltis-shaped
files, CLI processes and the file store.

Each test is a finding, marked xfail(strict=True) until it is fixed. serde_yaml facts
cite dtolnay/serde-yaml 0.9.34 `src/de.rs`: `deserialize_str` (any scalar's text, its tag
and style ignored), `deserialize_bool`/`deserialize_u64`/`deserialize_f64` (through
`is_plain_or_tagged_literal_scalar`: a plain scalar is parsed by the type's own parser
whatever its tag; a quoted one is refused even when tagged), `visit_scalar` (a
`deserialize_any` reading: only the bool/int/float/null tags decide, any other core tag
such as `!!binary` is text). Moltis reads moltis.yaml with `serde_yaml::from_str` into
`MoltisConfig` (crates/config/src/loader/config_io.rs `parse_config`) and moltis.toml with
toml 0.8.23 / toml_edit 0.22.27 (Cargo.lock), whose `parser/numbers.rs` `float` verifies
`*f != f64::INFINITY` only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.migrated_site import check_file, cli_process, file_site, readings_with_a_comment

# CLI processes and YAML/TOML files as operators write them: run by .ci/run
pytestmark = pytest.mark.torture


def _site(tmp_path: Path, name: str, text: str) -> dict[str, str]:
    return file_site(tmp_path, name, text, "tester@r23")


# ---------------------------------------------------------------------------------
# The moltis.yaml writer: plain values are still ruamel's, only keys became text


GITHUB_MCP = """\
server:
  port: 13131
mcp:
  servers:
    github:
      command: npx
      args: [-y, "@modelcontextprotocol/server-github"]
      env:
        GITHUB_PERSONAL_ACCESS_TOKEN: ghp_r23SECRETtoken
        DEBUG: True
"""


def test_migrate_masks_a_token_beside_an_unquoted_true_in_a_text_field(
        tmp_path: Path) -> None:
    """What I did: moltis.yaml with an MCP server whose `env` (Rust HashMap<String,
    Secret<String>>: text) holds a token and `DEBUG: True`, then `migrate` twice.
    What happened: the import is done, then migrate exits 1 with "internal error: editing
    the file would also change mcp.servers.github.env.DEBUG; nothing was written"; the
    backend is not switched and the token stays in clear in moltis.yaml, on every run.
    The file store cannot write any key of such a file either. What should happen:
    exit 0 and the token masked, `DEBUG: True` left as it is (Moltis and the reader both
    read the text "True"). Mechanism: `yaml_edit.edit_yaml` retags only plain *keys* as
    text (`_text_keys`, 7ff0335); a plain value is still built by ruamel's YAML 1.2
    resolver and dumped in ruamel's spelling: `True`/`TRUE`/`False` -> `true`/`false`,
    `+1` -> `1`, `-0` -> `0`, `+0x1F` -> `0x1F`, `~`/`NULL` -> empty, `0e1` -> `0e0`,
    `1__0` -> `1_0`, `1e400` -> `.inf` (a free-form value too), `-0x1` -> `!!int '0x-1'`
    (which neither the reader nor Moltis can read). Each changes a text field's value
    (or a free-form text), so the re-read refuses the write: the r21/r22 key findings'
    shape, for values."""
    env = _site(tmp_path, "moltis.yaml", GITHUB_MCP)
    first = cli_process(env, "migrate")
    second = cli_process(env, "migrate")
    text = (tmp_path / "config" / "moltis.yaml").read_text(encoding="utf-8")
    assert (first.returncode, second.returncode, "ghp_r23SECRETtoken" in text) == (
        0, 0, False), first.stderr + second.stderr
    # fixed: every value of an MCP server's env is a secret (Secret<String>), so DEBUG
    # is sealed like the token; what it holds is the text Moltis reads, "True"
    assert "DEBUG: <secret fp:" in text, text
    import asyncio

    from ledger.ops.open_store import open_store

    store = open_store(config_dir=tmp_path / "config", data_dir=tmp_path / "data", env=env)
    cfg = asyncio.run(store.load_effective())
    debug = cfg.mcp.servers["github"].env["DEBUG"].reveal()
    asyncio.run(store.close())
    assert debug == "True"


# ---------------------------------------------------------------------------------
# Explicit tags: serde's typed readers ignore a plain scalar's tag


def test_an_explicit_tag_in_a_number_field_is_read_as_serde_reads_it(tmp_path: Path) -> None:
    """What I did: moltis.yaml with `server.port: !!str 8080` (u16) and
    `memory.vector_weight: !!float "0.5"` (f32), then `check --file --json`.
    What happened: the port is an error ("Expected int, got str") and migrate would not
    import it, though Moltis loads it as 8080; the quoted weight is read as 0.5 with no
    problem, though Moltis refuses the file. What should happen: the port 8080, no error
    on it; an error on the weight. serde_yaml `deserialize_u64`/`deserialize_f64` take a
    plain scalar whatever its tag (`is_plain_or_tagged_literal_scalar`: `(Plain, _, _)
    => true`) and parse its text with `parse_unsigned_int`/`parse_f64`; a double-quoted
    scalar is an "invalid type" even when tagged `!!float` (the same for `!!int "8080"`
    in the port, `!!float 5` in `request_timeout_secs`, `!!str 0.5` in a weight).
    Mechanism: `yaml_read._composer` marks every explicitly tagged scalar so that ruamel
    constructs it by its tag, and `_read` never sees it, for any field type: the r22
    `!!str` fix is right only where serde reads through `deserialize_any`."""
    env = _site(tmp_path, "moltis.yaml",
                'server:\n  port: !!str 8080\nmemory:\n  vector_weight: !!float "0.5"\n')
    report = check_file(env, tmp_path / "config" / "moltis.yaml")
    errors = {p["path"] for p in report["problems"] if p["severity"] == "error"}
    assert errors == {"memory.vector_weight"}, report


def test_a_binary_tagged_value_is_its_text_as_moltis_reads_it(tmp_path: Path) -> None:
    """What I did: moltis.yaml as PyYAML dumps a token read as bytes (`token: !!binary
    c2stcjIz`) in a telegram account, and an MCP server `command: !!int 5`; `check
    --file` and `read_config_file`. What happened: the whole file is refused,
    "channels.telegram.bot.token: unsupported value of type bytes" (migrate and the file
    store too); with only the command, check says "Expected str, got int". What should
    happen: both are their text, as Moltis reads them: a free-form value goes through
    serde_yaml `visit_scalar`, where `tag:yaml.org,2002:binary` is none of the tags it
    acts on, so the scalar is `visit_str` of its text; a `String` field is
    `deserialize_str`, which ignores the tag (so `!!int "abc"` there is "abc" too, where
    the reader refuses the file: "a value does not fit its explicit tag"). Mechanism:
    `yaml_read._composer`/`_constructor` hand every explicitly tagged scalar to ruamel's
    constructor for its tag."""
    from ledger.stores.config_file import read_config_file

    path = tmp_path / "moltis.yaml"
    path.write_text("channels:\n  telegram:\n    bot:\n      token: !!binary c2stcjIz\n"
                    "mcp:\n  servers:\n    x:\n      command: !!int 5\n", encoding="utf-8")
    doc = read_config_file(path)
    assert (doc["channels"]["telegram"]["bot"]["token"],
            doc["mcp"]["servers"]["x"]["command"]) == ("c2stcjIz", "5")


def test_a_float_tagged_overflow_reads_the_same_whatever_a_comment_says(
        tmp_path: Path) -> None:
    """What I did: a telegram account `retry_backoff: !!float 1e400` in moltis.yaml,
    read twice: as it is, and with a comment `# see the info channel` above it.
    What happened: the first is refused ("nan and inf are not supported (they have no
    JSON form)"); the second is read, the key left out with a non-finite warning
    ("Moltis reads it as null there"), and migrate imports it. What should happen:
    refused both times, as Moltis refuses the file: serde_yaml `visit_scalar` reads a
    `tag:yaml.org,2002:float` scalar with `parse_f64`, which is None for a float that
    is not finite, so "invalid value: string \"1e400\", expected a float" (the same in
    a float field, `deserialize_f64`). Mechanism: `yaml_read._composer` hands the tagged
    scalar to ruamel's float constructor, which makes `1e400` an inf, and
    `config_file.parse_config` looks for non-finite floats only when the bytes contain
    "inf" or "nan" (the r21 finding, reopened by the explicit tag: a plain `1e400` is
    text since 7254f30)."""

    body = "channels:\n  telegram:\n    bot:\n      retry_backoff: !!float 1e400\n"
    readings = readings_with_a_comment(tmp_path, "moltis.yaml", body)
    assert all(isinstance(r, str) for r in readings), readings


# ---------------------------------------------------------------------------------
# Null-looking plain scalars in a text field


def test_a_tilde_or_an_empty_value_in_a_text_field_is_its_text(tmp_path: Path) -> None:
    """What I did: moltis.yaml with an MCP server `args: [--profile, ~]` (Vec<String>)
    and an `env` entry left empty to fill in later (`GITHUB_TOKEN:`, a
    HashMap<String, String> value), then `read_config_file` and `check --file --json`.
    What happened: the args file is refused whole ("mcp.servers.gh.args.1: unsupported
    value of type NoneType": migrate, the file store and check all refuse it); the empty
    env value is dropped and check calls it an error, "null, which Moltis refuses for
    this field (it takes text), so it would not load the file". What should happen:
    "~" and "" (no error): serde_yaml `deserialize_str` takes any scalar event's text,
    with no null test (only `deserialize_option`, an `Option<String>`, reads `~` or an
    empty value as None), so Moltis loads this file and starts the server with
    GITHUB_TOKEN set to "". Mechanism: `yaml_read._read` returns `item.value` (None) for
    a null-looking plain scalar before looking at the field's kind, and
    `introspect.value_reading` says "text" for `str` and `str | None` alike."""
    from ledger.stores.config_file import read_config_file

    path = tmp_path / "args" / "moltis.yaml"
    path.parent.mkdir()
    path.write_text("mcp:\n  servers:\n    gh:\n      command: npx\n"
                    "      args: [--profile, ~]\n", encoding="utf-8")
    doc = read_config_file(path)
    assert doc["mcp"]["servers"]["gh"]["args"] == ["--profile", "~"]
    env = _site(tmp_path, "moltis.yaml", "mcp:\n  servers:\n    gh:\n      command: npx\n"
                "      env:\n        GITHUB_TOKEN:\n")
    report = check_file(env, tmp_path / "config" / "moltis.yaml")
    assert [p for p in report["problems"] if p["severity"] == "error"] == [], report


# ---------------------------------------------------------------------------------
# TOML: 1e400 refused, but toml_edit 0.22 refuses only +inf


def test_a_toml_minus_1e400_reads_as_minus_inf_does(tmp_path: Path) -> None:
    """What I did: moltis.toml with a telegram account (free-form) `retry_backoff =
    -1e400`, read with `read_config_file`, and the same file with `-inf`.
    What happened: `-inf` is read (left out, a non-finite warning in check); `-1e400`
    refuses the whole file: "invalid TOML: -1e400 is too large for a number (Moltis
    refuses it too)". What should happen: the same reading as `-inf`: Moltis's toml
    0.8.23 parses floats with toml_edit 0.22.27, whose `float` is
    `parse::<f64>().verify(|f| *f != f64::INFINITY)`: -1e400 is f64::NEG_INFINITY, which
    passes, so Moltis loads the file (the message is wrong about Moltis). Mechanism:
    `documents._toml_float` refuses any infinite value not spelled `inf`, whatever its
    sign. (`1e-400` is 0.0 for both, and `1e400` refused by both: those held up.)"""
    from ledger.stores.config_file import read_config_file

    readings = []
    for name, value in (("word", "-inf"), ("number", "-1e400")):
        path = tmp_path / name / "moltis.toml"
        path.parent.mkdir()
        path.write_text(f"[channels.telegram.bot]\nenabled = true\nretry_backoff = {value}\n",
                        encoding="utf-8")
        readings.append(read_config_file(path))
    assert readings[0] == readings[1], readings


# ---------------------------------------------------------------------------------
# check --file: notes capped at 100 a kind


def test_check_says_when_it_left_reading_notes_out(tmp_path: Path) -> None:
    """What I did: moltis.yaml with an MCP server whose `args` are 150 unquoted numbers
    (list[str]: each an unquoted-text warning), then `check --file` (text and --json).
    What happened: exactly 100 warnings, args.149 down to args.50 (the last 100 in the
    file, listed backwards); nothing says 50 more were left out, and args.0..49, the
    first ones the operator looks at, are not named. What should happen: the 100 shown
    and a line saying how many more of that kind there are (as `log` says "… 12 more"),
    or every path. Mechanism: `yaml_read.YamlNotes.add` drops a note once its kind holds
    MAX_NOTES, with no count kept, and `_settle` walks a LIFO stack, so the kept notes
    are the file's last ones; `check._reading_problems` cannot tell."""
    args = ", ".join(str(i) for i in range(150))
    env = _site(tmp_path, "moltis.yaml",
                "server:\n  port: 13131\nmcp:\n  servers:\n    x:\n      command: tool\n"
                f"      args: [{args}]\n")
    report = check_file(env, tmp_path / "config" / "moltis.yaml")
    paths = {p["path"] for p in report["problems"] if p["kind"] == "unquoted-text"}
    text = cli_process(env, "check", "--file", str(tmp_path / "config" / "moltis.yaml"))
    said = "50 more" in text.stdout + text.stderr or "50 more" in json.dumps(report)
    assert len(paths) == 150 or ("mcp.servers.x.args.0" in paths and said), sorted(paths)[:5]
