"""What a hand edit of moltis.toml becomes in the ledger (issues 15 and 16).

- Emptying a table by hand is expressed as what the operator did: the removed keys are
  unsets; an empty header left behind records no `= {}` value; a section deleted
  outright is one unset of that table.
- `[config]` (the backend, the ledger's location and id) is local wiring, never config
  content: no import path (first migrate, incremental migrate, a hand edit, the
  gateway's first start, a switch) takes it into the ledger.
- The check for a hand edit that runs before every command trusts a keyed digest of the
  file's bytes kept in the ledger meta; a digest that is missing, stale, forged or bound
  to other import prints only ever costs the full check, never an edit.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import apsw
import pytest

from ledger.ops.open_store import open_store
from tests.operator import Site, make_site

DIGEST = "import.config.digest"
PRINTS = "import.config.leaves"


@pytest.fixture
def site(tmp_path: Path) -> Site:
    site = make_site(tmp_path)
    site.ok("migrate")
    return site


def last_event(site: Site) -> dict:
    return site.ok("log", "--limit", "1", "--json").json()["events"][0]


def ops(event: dict) -> list[tuple[str, str]]:
    return [(c["op"], c["path"]) for c in event["changes"]]


def head(site: Site) -> int:
    return int(site.ok("log", "--limit", "1", "--json").json()["head_seq"])


def meta(site: Site, key: str) -> str | None:
    conn = apsw.Connection(str(site.db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        row = conn.execute("SELECT value FROM ledger_meta WHERE key = ?", (key,)).fetchone()
    finally:
        conn.close()
    return None if row is None else str(row[0])


def set_meta(site: Site, key: str, value: str | None) -> None:
    conn = apsw.Connection(str(site.db))
    try:
        if value is None:
            conn.execute("DELETE FROM ledger_meta WHERE key = ?", (key,))
        else:
            conn.execute("INSERT OR REPLACE INTO ledger_meta (key, value) VALUES (?, ?)",
                         (key, value))
    finally:
        conn.close()


# ---------------------------------------------------------------------------------
# emptying a table by hand


def test_emptying_a_table_but_keeping_its_header_is_an_unset_of_its_keys(site: Site) -> None:
    site.edit('[identity]\nname = "Atlas"\n', "[identity]\n")
    assert site.run("get", "identity.name").code == 1  # not set any more
    event = last_event(site)
    assert event["source"] == "file"
    assert ops(event) == [("unset", "identity.name")]  # no `set identity = {}`
    text = site.ok("log", "--limit", "1").out
    assert "unset identity.name" in text and "identity = {}" not in text
    # blame: the empty table left behind was made so by the hand edit
    blame = site.ok("blame", "identity", "--json").json()
    assert [(e["path"], e["seq"]) for e in blame["entries"]] == [("identity", event["seq"])]
    # nothing more to import: the ledger now holds what the file holds
    seq = head(site)
    site.ok("get", "server.port")
    assert head(site) == seq


def test_deleting_a_whole_section_is_one_unset_of_that_table(site: Site) -> None:
    site.edit('[identity]\nname = "Atlas"\n', "")
    site.ok("get", "server.port")
    event = last_event(site)
    assert ops(event) == [("unset", "identity")]
    assert "identity" not in site.ok("show", "--json").json()
    blame = site.ok("blame", "--json").json()
    assert not [e for e in blame["entries"] if e["path"].startswith("identity")]


def test_a_deleted_section_keeps_what_the_ledger_added_to_it_since(site: Site) -> None:
    site.ok("set", "identity.emoji", "🦊", "--reason", "a face")
    site.edit('[identity]\nname = "Atlas"\n', "")
    site.ok("get", "server.port")
    assert ops(last_event(site)) == [("unset", "identity.name")]
    assert site.ok("show", "--json").json()["identity"] == {"emoji": "🦊"}


def test_a_deleted_map_entry_does_not_survive_as_an_empty_entry(site: Site) -> None:
    site.edit("[providers.openai]\nenabled = true\n", "")
    site.ok("get", "server.port")
    assert ops(last_event(site)) == [("unset", "providers")]
    assert "providers" not in site.ok("show", "--json").json()


# ---------------------------------------------------------------------------------
# [config] is wiring, never content


def config_section(site: Site) -> object:
    return site.ok("show", "--json").json().get("config")


def test_migrate_never_imports_the_config_section(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    site.edit("[tools]\n", '[config]\nbackend = "sqlite"\n\n[tools]\n')
    site.ok("migrate")  # first import: [config] is in the file from the start
    assert config_section(site) is None
    changes = ops(site.ok("log", "--json").json()["events"][-1])
    assert not [p for _, p in changes if p.startswith("config")]
    # an incremental migrate after the operator adds wiring
    with site.toml.open("a", encoding="utf-8") as f:
        f.write(f'db = "{site.db}"\n')
    seq = head(site)
    result = site.ok("migrate")
    assert head(site) == seq, result.out
    assert config_section(site) is None


def test_migrate_still_refuses_a_file_whose_wiring_is_invalid(tmp_path: Path) -> None:
    from ledger.errors import ConfigValidationError
    from ledger.ops.migrate import migrate
    from ledger.stores.ledger_store import MemoryConfigStore

    site = make_site(tmp_path)
    site.edit("[tools]\n", '[config]\nbackend = "mysql"\n\n[tools]\n')
    store = MemoryConfigStore()
    with pytest.raises(ConfigValidationError) as err:
        migrate(store.ledger, config_file=site.toml, keys_file=None, data_dir=site.data_dir)
    assert str(site.toml) in str(err.value) and "config.backend" in str(err.value)
    assert store.ledger.head_state().seq == 0


def test_a_hand_edit_of_the_config_section_is_not_imported(site: Site) -> None:
    seq = head(site)
    with site.toml.open("a", encoding="utf-8") as f:
        f.write(f'db = "{site.db}"\n')  # the file ends in [config] after migrate
    assert "[config]" in site.toml.read_text(encoding="utf-8")
    site.ok("get", "server.port")
    assert head(site) == seq
    assert config_section(site) is None
    # a real edit next to it imports only the real edit
    site.edit("port = 13131", "port = 8443")
    site.ok("get", "server.port")
    assert ops(last_event(site)) == [("set", "server.port")]
    assert config_section(site) is None


def test_the_gateways_first_start_does_not_import_the_config_section(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    site.edit("[tools]\n", '[config]\nbackend = "sqlite"\n\n[tools]\n')

    async def first_start() -> None:
        store = open_store()
        await store.close()

    asyncio.run(first_start())
    assert site.db.exists()
    assert config_section(site) is None
    assert not [p for p in json.loads(meta(site, PRINTS) or "{}") if p.startswith("config")]


# ---------------------------------------------------------------------------------
# the digest of the file's bytes: a cache, never a reason to skip an edit


def test_the_digest_is_recorded_with_the_import_and_follows_each_import(site: Site) -> None:
    first = meta(site, DIGEST)
    assert first
    site.edit("port = 13131", "port = 8443")
    site.ok("get", "server.port")
    second = meta(site, DIGEST)
    assert second and second != first
    # a comment-only edit imports nothing, and the digest catches up (so the next
    # command is cheap again)
    seq = head(site)
    site.edit("# the gateway of the team (hand-written)", "# the team's gateway")
    site.ok("get", "server.port")
    assert head(site) == seq
    third = meta(site, DIGEST)
    assert third and third not in (first, second)


@pytest.mark.parametrize("forgery", ["unkeyed", "other-key", "garbage", "deleted"])
def test_a_forged_or_missing_digest_never_hides_a_hand_edit(site: Site, forgery: str) -> None:
    from blake3 import blake3

    site.edit('name = "Atlas"', 'name = "Nova"')
    data = site.toml.read_bytes()
    forged = {"unkeyed": "v1:" + blake3(data).hexdigest(),
              "other-key": "v1:" + blake3(data, key=b"k" * 32).hexdigest(),
              "garbage": "not a digest", "deleted": None}[forgery]
    set_meta(site, DIGEST, forged)
    assert site.ok("get", "identity.name").out.strip() == "Nova"
    assert ops(last_event(site)) == [("set", "identity.name")]


def test_a_digest_is_bound_to_the_import_prints_it_was_recorded_with(site: Site) -> None:
    """Someone who can write the database keeps the good digest of the file but alters
    the import prints beside it: the digest no longer counts, and the full check decides
    (which here sees the port as edited by hand, clashing with the ledger's change)."""
    site.ok("set", "server.port", "8080", "--reason", "proxy")
    prints = json.loads(meta(site, PRINTS) or "{}")
    prints["server.port"] = "b:" + "0" * 32  # as if the last import had another port
    set_meta(site, PRINTS, json.dumps(prints, sort_keys=True))
    result = site.ok("get", "server.port")
    assert result.out.strip() == "8080"
    assert "server.port (changed in the ledger at seq 2)" in result.err


# ---------------------------------------------------------------------------------
# what the check costs: nothing heavy while the file is unchanged

HEAVY_WHILE_UNCHANGED = [
    "ledger.ops.migrate", "ledger.schema", "ledger.schema.introspect", "ledger.typed.layers",
    "ledger.typed.head_cache", "ledger.typed.convert", "ledger.typed.changes",
    "ledger.ops.mirror", "ledger.stores.file_store", "tomlkit", "difflib", "asyncio",
    "rich", "cryptography"]


def test_get_loads_nothing_heavy_while_the_file_is_unchanged(site: Site) -> None:
    from tests.test_cli_start import probe

    code, modules, output = probe("get", "server.port")
    assert (code, output) == (0, "13131")
    assert [m for m in HEAVY_WHILE_UNCHANGED if m in modules] == []
    # a hand edit loads the import machinery once, and imports the edit ...
    site.edit("port = 13131", "port = 8443")
    code, modules, output = probe("get", "server.port")
    assert (code, output) == (0, "8443")
    assert "ledger.ops.migrate" in modules
    # ... after which the file is in step again and `get` is light again
    code, modules, output = probe("get", "server.port")
    assert (code, output) == (0, "8443")
    assert [m for m in HEAVY_WHILE_UNCHANGED if m in modules] == []


def test_a_digest_that_cannot_be_written_never_fails_a_read(site: Site) -> None:
    """Only a cache is at stake when the bytes changed but not the values: another
    writer holding the lock (or read-only media) must not fail `get`."""
    old = meta(site, DIGEST)
    site.edit("# the gateway of the team (hand-written)", "# the team's gateway")
    holder = apsw.Connection(str(site.db))
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = site.ok("--busy-timeout", "0", "get", "server.port")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.out.strip() == "13131"
    assert meta(site, DIGEST) == old  # not recorded this time ...
    site.ok("get", "server.port")
    assert meta(site, DIGEST) != old  # ... but by the next command that can
