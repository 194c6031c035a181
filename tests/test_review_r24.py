"""Review r24: attacking the fixes of review r23 (be0a290: the moltis.yaml round-trip
editor keeps every plain number, bool, null or timestamp as written, `_Verbatim`;
9ca246d: every YAML scalar read by the field it lands in, `text?` for an optional text,
explicit tags by field) with real Moltis-shaped files, CLI processes and the file store.

Each test is a finding, marked xfail(strict=True) until it is fixed. serde_yaml facts
cite dtolnay/serde-yaml 0.9.34 `src/de.rs`: `deserialize_str` (any scalar's text, its tag
and style ignored), `deserialize_option` (a non-plain scalar is always `Some`; a plain
`!!null`-tagged one is None when its text is a null, else "invalid value ... expected
null"), `deserialize_f64` through `is_plain_or_tagged_literal_scalar` (a quoted scalar
is refused). Moltis reads moltis.yaml with `serde_yaml::from_str` into `MoltisConfig`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.migrated_site import file_site, migrate_file_site

# CLI processes and YAML files as operators write them: run by .ci/run
pytestmark = pytest.mark.torture


def _site(tmp_path: Path, text: str) -> dict[str, str]:
    return file_site(tmp_path, "moltis.yaml", text, "tester@r24")


# ---------------------------------------------------------------------------------
# The editor still builds an explicitly tagged scalar with ruamel's constructor


def test_migrate_never_prints_a_tagged_quoted_token(tmp_path: Path) -> None:
    """What I did: moltis.yaml with an MCP server whose `env` (HashMap<String,
    Secret<String>>) holds `GITHUB_PERSONAL_ACCESS_TOKEN: !!int "ghpr24SECRETtoken"` (a
    stray tag left by a YAML tool, the r22 shape), `check --file` then `migrate`.
    What happened: check says ok (the field takes the text, as Moltis's
    `deserialize_str` does since 9ca246d); migrate imports the token, then exits 1 with
    "internal error: cannot edit the file (ValueError: invalid literal for int() with
    base 10: 'ghpr24SECRETtoken')": the token in clear on stderr (and in any log of
    the run), and left in clear in the file. `!!float "..."` prints it lowercased,
    `!!timestamp "..."` prints it as written. What should happen: migrate exits 0 and
    masks the token (Moltis reads the text), and no message ever holds it.
    Mechanism: `yaml_edit._verbatim` keeps only *plain* bool/int/float/null/timestamp
    scalars; a quoted tagged one still goes to ruamel's `construct_yaml_int` (etc.),
    which raises with the value, and `file_store._render` (and the migrate path through
    it) puts the exception's text in its StoreError."""
    env = _site(tmp_path, "server:\n  port: 13131\nmcp:\n  servers:\n    github:\n"
                "      command: npx\n      env:\n"
                '        GITHUB_PERSONAL_ACCESS_TOKEN: !!int "ghpr24SECRETtoken"\n')
    run, text = migrate_file_site(env)
    assert "r24SECRETtoken" not in run.stdout + run.stderr, run.stderr
    assert (run.returncode, "r24SECRETtoken" in text) == (0, False), run.stderr


def test_the_file_store_writes_beside_an_explicitly_tagged_value(tmp_path: Path) -> None:
    """What I did: moltis.yaml with `memory.vector_weight: !!float 1` (f32; Moltis reads
    the plain scalar as 1.0) and an MCP server `command: !!binary bnB4` (PyYAML's
    dump of bytes; a String field: Moltis reads the text "bnB4"), served by
    FileConfigStore (no ledger), `update_raw` changing only `server.port`.
    What happened: StoreError "internal error: editing the file would also change
    memory.vector_weight" (with the weight alone), "... mcp.servers.x.command" (with the
    command alone): no key of such a file can be written. The editor writes
    `!!float '1'` (quoted: Moltis refuses a quoted scalar in a float field; the same for
    `!!float 5` in a u64 field, `!!int 1.5`), and `!!binary |` with the text on its
    own line (the text gains a newline; `!!binary sk-live-X!` becomes `skliveX`).
    What should happen: the port written, both values left exactly as they were.
    Mechanism: `yaml_edit._verbatim` keeps the scalar's text with the tag ruamel
    *resolved*, so the emitter, finding that "1" does not resolve to float implicitly,
    writes the tag and quotes the text; `binary` is not among the kept tags, so ruamel
    decodes it to bytes and dumps a block literal."""
    from ledger.stores.file_store import FileConfigStore

    def set_port(cfg: object) -> None:
        cfg.server.port = 14000  # type: ignore[attr-defined]

    results = []
    for name, body in (("weight", "memory:\n  vector_weight: !!float 1\n"),
                       ("binary", "mcp:\n  servers:\n    x:\n      command: !!binary bnB4\n")):
        path = tmp_path / name / "moltis.yaml"
        path.parent.mkdir()
        path.write_text("server:\n  port: 13131\n" + body, encoding="utf-8")
        asyncio.run(FileConfigStore(path).update_raw(set_port, actor="tester@r24"))
        results.append(path.read_text(encoding="utf-8"))
    assert results == ["server:\n  port: 14000\nmemory:\n  vector_weight: !!float 1\n",
                       "server:\n  port: 14000\nmcp:\n  servers:\n    x:\n"
                       "      command: !!binary bnB4\n"], results


def test_the_file_store_writes_a_yaml_file_that_holds_only_a_null(tmp_path: Path) -> None:
    """What I did: a moltis.yaml the installer left as a comment and `~` (an explicitly
    empty document), served by FileConfigStore, `update_raw` setting `server.port`.
    What happened: the read gives {} (the reader makes a null document empty), then
    StoreError "internal error: cannot edit the file (AttributeError: '_Verbatim' object
    has no attribute 'get')" (`edit_yaml` alone: TypeError "'_Verbatim' object does not
    support item assignment"); the same for `null`. Before be0a290 this wrote the port.
    What should happen: the port written (or, if Moltis refuses such a file, the read
    refusing it by name, never an internal error). Mechanism: `yaml_edit.edit_yaml`
    replaces the document by a new map only when ruamel returns None, and
    `_verbatim`'s constructor now returns a `_Verbatim` for a plain null document."""
    from ledger.errors import ParseError
    from ledger.stores.config_file import read_config_file
    from ledger.stores.file_store import FileConfigStore

    path = tmp_path / "moltis.yaml"
    path.write_text("# moltis config, filled in by the installer\n~\n", encoding="utf-8")
    try:
        read_config_file(path)
    except ParseError:
        return  # refused by name: fine
    from ledger.errors import StoreError

    def set_port(cfg: object) -> None:
        cfg.server.port = 14000  # type: ignore[attr-defined]

    try:
        asyncio.run(FileConfigStore(path).update_raw(set_port, actor="tester@r24"))
    except StoreError as err:
        pytest.fail(str(err))
    assert read_config_file(path) == {"server": {"port": 14000}}


# ---------------------------------------------------------------------------------
# `text?`: an optional text field's `!!null` tag


def test_an_optional_key_tagged_null_reads_as_serde_reads_it(tmp_path: Path) -> None:
    """What I did: moltis.yaml with `tools.web.search.api_key: !!null "BSAr24key"`
    (Option<Secret<String>>: a stray tag before a quoted key), read with
    `read_config_file`; then `voice.tts.openai.api_key: !!null sk-r24` (plain).
    What happened: both are dropped silently (the key is unset: migrate imports no key,
    check says nothing). What should happen: the first is the text "BSAr24key", as
    Moltis reads it (`deserialize_option`: a scalar that is not plain is `Some`, then
    `deserialize_str` takes its text); the second refuses the file, as Moltis does
    ("invalid value: string \"sk-r24\", expected null"). Mechanism: `yaml_read._read`
    for "text?" returns None whenever `item.tag == "null"`, without looking at whether
    the scalar is plain or its text a null."""
    from ledger.errors import ParseError
    from ledger.stores.config_file import read_config_file

    quoted = tmp_path / "quoted" / "moltis.yaml"
    quoted.parent.mkdir()
    quoted.write_text('tools:\n  web:\n    search:\n      api_key: !!null "BSAr24key"\n',
                      encoding="utf-8")
    doc = read_config_file(quoted)
    assert doc.get("tools", {}).get("web", {}).get("search", {}).get("api_key") == "BSAr24key"
    plain = tmp_path / "plain" / "moltis.yaml"
    plain.parent.mkdir()
    plain.write_text("voice:\n  tts:\n    openai:\n      api_key: !!null sk-r24\n",
                     encoding="utf-8")
    with pytest.raises(ParseError):
        read_config_file(plain)
