"""Issue 14: secrets inside arrays and URL userinfo in typed string fields, on a real
SQLite ledger: sealed in the chain (never plaintext in the database or its WAL),
fingerprinted, shreddable by fingerprint, surviving rollback, past reads, key
rotation and verify; older events read unchanged; `${VAR}` references stay readable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from ledger import SqliteConfigStore
from ledger.core.events import Change, ChangePayload, decode_change_payload, encode_payload
from ledger.core.secret_refs import SecretRef, refs_in
from ledger.errors import ConfigValidationError, SecretDestroyedError
from tests.conftest import run

TOKEN = "sk-ARRAY-apikey-0001"
EQ = "tok-ARRAY-eq-0002"
BEARER = "brr-ARRAY-0003"
HOOK = "hook-ARRAY-env-0004"
URLPW = "pwARRAYurl0005"
ARGS = ["--api-key", TOKEN, f"--token={EQ}", "-H", f"Authorization: Bearer {BEARER}",
        "--verbose"]
URL = f"https://bot:{URLPW}@mcp.example/sse"
HOOKS = [{"name": "audit", "command": "./audit.sh", "events": ["x"],
          "env": {"API_TOKEN": HOOK, "LOG_LEVEL": "debug"}}]
PLAIN = [TOKEN, EQ, BEARER, HOOK, URLPW]


@pytest.fixture
def store(tmp_path: Path):
    s = SqliteConfigStore(tmp_path / "ledger.db")
    yield s
    s.ledger.close()


def _set_all(store) -> None:
    run(store.edit({("mcp", "servers", "gh", "command"): "gh-mcp",
                    ("mcp", "servers", "gh", "args"): ARGS,
                    ("mcp", "servers", "gh", "url"): URL,
                    ("hooks", "hooks"): HOOKS}, reason="integrations"))


def _gateway(store):
    return run(store.load_effective(env={}))


def test_secrets_in_arrays_never_reach_the_database_in_clear(store, tmp_path: Path) -> None:
    _set_all(store)
    run(store.update_raw(lambda c: setattr(c.server, "port", 8111)))
    for path in tmp_path.glob("ledger.db*"):
        data = path.read_bytes()
        assert not [p for p in PLAIN if p.encode() in data], path
    doc = store.ledger.head_state().config
    args = doc["mcp"]["servers"]["gh"]["args"]
    assert [type(a).__name__ for a in args] == ["str", "SecretRef", "SecretRef", "str",
                                               "SecretRef", "str"]
    env = doc["hooks"]["hooks"][0]["env"]
    assert isinstance(env["API_TOKEN"], SecretRef) and env["LOG_LEVEL"] == "debug"
    assert isinstance(doc["mcp"]["servers"]["gh"]["url"], SecretRef)
    # stored as references inside the list, flagged on the change
    ev = next(e for e in store.ledger.events() if e.touches(("hooks",)))
    change = next(c for c in ev.changes if c.path == ("hooks", "hooks"))
    assert change.sealed and len(list(change.refs())) == 1
    assert HOOK not in change.describe() and "<secret fp:" in change.describe()
    gw = _gateway(store)
    assert gw.mcp.servers["gh"].args == ARGS and gw.mcp.servers["gh"].url == URL
    assert gw.hooks is not None
    assert gw.hooks.hooks[0].env == HOOKS[0]["env"]
    report = run(store.verify())  # the list's secrets are live references, no orphans
    assert report.ok, report.problem


def test_the_same_list_again_records_nothing(store) -> None:
    _set_all(store)
    seq = store.ledger.head_state().seq
    _set_all(store)  # the same plaintext: same fingerprints, same references
    run(store.edit({("mcp", "servers", "gh", "args"): list(ARGS)}))
    assert not run(store.update_raw(lambda c: setattr(c.mcp.servers["gh"], "args",
                                                      list(ARGS)))).appended
    assert not run(store.save_raw(run(store.load_raw()))).appended
    assert store.ledger.head_state().seq == seq


def test_shred_by_fingerprint_reaches_an_element_of_a_list(store) -> None:
    _set_all(store)
    ref = store.ledger.head_state().config["mcp"]["servers"]["gh"]["args"][1]
    assert store.ledger.refs_with_fingerprint(ref.fp) == [ref]
    store.ledger.shred([ref], reason="leaked")
    args = _gateway(store).mcp.servers["gh"].args
    assert args[1] == f"<secret destroyed fp:{ref.fp}>"  # a mask, never the reference
    assert args[2] == f"--token={EQ}"
    report = run(store.verify())
    assert report.ok, report.problem
    # the shred event names where the value was held
    shred = next(e for e in store.ledger.events(descending=True) if e.shredded)
    assert shred.shredded_paths == (("config", ("mcp", "servers", "gh", "args")),)
    # rolling back to a point that held it is refused, unless left unset
    from ledger.ops.history import rollback

    first = next(e.seq for e in store.ledger.events() if e.touches(("mcp",)))
    run(store.edit({("mcp", "servers", "gh", "args"): ["--verbose"]}))
    with pytest.raises(SecretDestroyedError, match="args"):
        rollback(store.ledger, first)
    done = rollback(store.ledger, first, leave_destroyed_unset=True)
    assert done.left_unset == ["mcp.servers.gh.args"]


def test_rollback_and_past_reads_bring_back_the_plain_values(store) -> None:
    _set_all(store)
    first = store.ledger.head_state().seq
    run(store.edit({("mcp", "servers", "gh", "args"): ["--api-key", "sk-ARRAY-second-9"]}))
    assert _gateway(store).mcp.servers["gh"].args == ["--api-key", "sk-ARRAY-second-9"]
    past = run(store.load_effective_at(first, env={}))
    assert past.mcp.servers["gh"].args == ARGS
    assert run(store.load_raw_at(first)).mcp.servers["gh"].args == ARGS
    from ledger.ops.history import rollback

    result = rollback(store.ledger, first)
    assert result.commit is not None and result.commit.appended
    assert _gateway(store).mcp.servers["gh"].args == ARGS
    # the rollback restored the very references (no new sealed copies)
    now = store.ledger.head_state().config["mcp"]["servers"]["gh"]["args"]
    then = store.ledger.state_at(first).config["mcp"]["servers"]["gh"]["args"]
    assert now == then


def test_key_rotation_keeps_secrets_in_lists_readable(store, tmp_path: Path) -> None:
    import secrets

    _set_all(store)
    store.ledger.rotate_key(secrets.token_bytes(32))
    gw = _gateway(store)
    assert gw.mcp.servers["gh"].args == ARGS
    assert gw.hooks is not None and gw.hooks.hooks[0].env["API_TOKEN"] == HOOK
    report = run(store.verify())
    assert report.ok, report.problem


def test_a_reference_marker_given_as_input_is_refused(store) -> None:
    with pytest.raises(ConfigValidationError, match=r"\$secret"):
        run(store.edit({("mcp", "servers", "gh", "args"): [{"$secret": "x", "fp": "y"}]}))
    with pytest.raises(ConfigValidationError, match=r"\$secret"):
        run(store.save_raw({"vendor": {"k": {"$secret": "x", "fp": "y"}}}))


def test_older_events_read_unchanged() -> None:
    """An event written before `sealed` existed (or without it) keeps a table that looks
    like a reference as the plain table it was; a flagged one holds references."""
    marker = {"$secret": "abc", "fp": "0011"}
    old = encode_payload(ChangePayload([Change(op="set", path=("x",), value=[marker])]))
    assert b'"sealed"' not in old
    assert decode_change_payload(old).changes[0].value == [marker]
    new = encode_payload(ChangePayload([Change(op="set", path=("x",),
                                               value=[SecretRef(ref="abc", fp="0011")])]))
    assert b'"sealed":true' in new
    assert decode_change_payload(new).changes[0].value == [SecretRef(ref="abc", fp="0011")]
    # a change without list references encodes exactly as before
    plain = Change(op="set", path=("a",), value=["--verbose"])
    assert encode_payload(ChangePayload([plain])) == msgspec.json.Encoder(
        order="deterministic").encode(ChangePayload([plain]))


def test_env_references_are_not_sealed(store) -> None:
    run(store.edit({("mcp", "servers", "gh", "args"): ["--token", "${GH_TOKEN}"],
                    ("mcp", "servers", "gh", "url"): "https://bot:${GH_PW}@mcp.example/x"}))
    doc = store.ledger.head_state().config["mcp"]["servers"]["gh"]
    assert doc["args"] == ["--token", "${GH_TOKEN}"]
    assert doc["url"] == "https://bot:${GH_PW}@mcp.example/x"
    gw = run(store.load_effective(env={"GH_TOKEN": "t0k", "GH_PW": "pw"}))
    assert gw.mcp.servers["gh"].args == ["--token", "t0k"]
    assert gw.mcp.servers["gh"].url == "https://bot:pw@mcp.example/x"


def test_tables_inside_lists_in_unknown_places_are_sealed_by_name(store) -> None:
    run(store.edit({("vendor", "targets"): [{"name": "a", "api_key": "sk-ARRAY-vendor-7",
                                             "nested": [{"password": "pw-ARRAY-8"}]}]},
                   reason="unknown section"))
    value = store.ledger.head_state().config["vendor"]["targets"]
    assert value[0]["name"] == "a"
    assert isinstance(value[0]["api_key"], SecretRef)
    assert isinstance(value[0]["nested"][0]["password"], SecretRef)
    assert len(list(refs_in(value))) == 2


def test_file_store_keeps_plain_values_as_moltis_reads_them(tmp_path: Path) -> None:
    """The moltis.toml backend has no vault: it writes the values as Moltis reads them
    (as it does for free-form channel secrets)."""
    from ledger.stores.file_store import FileConfigStore

    path = tmp_path / "moltis.toml"
    store = FileConfigStore(path)
    _set_all(store)
    text = path.read_text()
    assert TOKEN in text and HOOK in text and URLPW in text
    gw = run(store.load_effective(env={}))
    assert gw.mcp.servers["gh"].args == ARGS
    assert not run(store.update_raw(lambda c: None)).appended


def _write_lists_through_open_store() -> None:
    """What a gateway's UI does: set the MCP server's args and URL and the hooks
    (secrets inside lists and URL userinfo) through the store `open_store()` gives."""
    import asyncio

    from ledger.ops.open_store import open_store

    async def write() -> None:
        store = open_store()
        try:
            await store.edit({("mcp", "servers", "gh", "command"): "gh-mcp",
                              ("mcp", "servers", "gh", "args"): ARGS,
                              ("mcp", "servers", "gh", "url"): URL,
                              ("hooks", "hooks"): HOOKS}, actor="ui", reason="mcp")
        finally:
            await store.close()

    asyncio.run(write())


def _gateway_view(env: dict[str, str] | None) -> tuple[str, Any]:
    """The backend `open_store()` picks and the effective config it serves."""
    import asyncio

    from ledger.ops.open_store import open_store

    async def served() -> tuple[str, Any]:
        store = open_store()
        try:
            return store.backend_name, await store.load_effective(env=env)
        finally:
            await store.close()

    return asyncio.run(served())


def test_the_head_mirror_serves_secrets_in_lists_to_the_gateway(tmp_path: Path) -> None:
    """With the ledger unreadable the gateway is served the head mirror: the sealed
    values of the list's secrets are in it (never their plaintext), and open."""

    from tests.operator import make_site

    site = make_site(tmp_path)
    site.ok("migrate")

    _write_lists_through_open_store()
    mirrors = list(site.data_dir.glob("ledger-head*.json"))
    assert mirrors and not [m for m in mirrors for p in PLAIN if p.encode() in m.read_bytes()]
    for suffix in ("-wal", "-shm"):
        Path(f"{site.db}{suffix}").unlink(missing_ok=True)
    site.db.write_bytes(b"this is not a database any more" * 100)

    backend, cfg = _gateway_view(env=None)
    assert backend == "mirror"
    assert cfg.mcp.servers["gh"].args == ARGS  # type: ignore[attr-defined]
    assert cfg.mcp.servers["gh"].url == URL  # type: ignore[attr-defined]
    assert cfg.hooks.hooks[0].env == HOOKS[0]["env"]  # type: ignore[attr-defined]


def test_a_masked_export_reimports_to_the_same_references(store, tmp_path: Path) -> None:
    """A masked export holds `<secret fp:…>` inside the list; importing it back records
    nothing (the fingerprints match the references there), and into a fresh ledger the
    elements become withheld secrets, never the mask text as a value."""
    from ledger.ops.display import display_doc

    _set_all(store)
    masked = display_doc(store.ledger.head_state().config, store.ledger.vault)
    assert "<secret fp:" in masked["mcp"]["servers"]["gh"]["args"][1]
    seq = store.ledger.head_state().seq
    run(store.save_raw(masked))
    assert store.ledger.head_state().seq == seq
    fresh = SqliteConfigStore(tmp_path / "fresh.db")
    try:
        run(fresh.save_raw(masked))
        args = fresh.ledger.head_state().config["mcp"]["servers"]["gh"]["args"]
        assert isinstance(args[1], SecretRef) and args[1].ref.startswith("withheld-")
        assert args[1].fp == masked["mcp"]["servers"]["gh"]["args"][1][len("<secret fp:"):-1]
    finally:
        fresh.ledger.close()


def test_switch_to_the_file_store_and_back(tmp_path: Path) -> None:
    """`switch-backend file` writes the list's secrets and the URL in clear into
    moltis.toml (what Moltis reads; the file store has no vault); switching back seals
    them again and the gateway gets the same values throughout."""
    import tomllib

    from tests.operator import make_site

    site = make_site(tmp_path)
    site.ok("migrate")

    _write_lists_through_open_store()
    site.ok("switch-backend", "file")
    doc = tomllib.loads(site.toml.read_text())
    assert doc["mcp"]["servers"]["gh"]["args"] == ARGS
    assert doc["hooks"]["hooks"][0]["env"]["API_TOKEN"] == HOOK
    backend, cfg = _gateway_view(env={})
    assert backend == "file" and cfg.mcp.servers["gh"].args == ARGS  # type: ignore[attr-defined]
    site.ok("switch-backend", "sqlite")
    backend, cfg = _gateway_view(env={})
    assert backend == "sqlite" and cfg.mcp.servers["gh"].url == URL  # type: ignore[attr-defined]
    for path in site.data_dir.glob("moltis.db*"):
        assert not [p for p in PLAIN if p.encode() in path.read_bytes()], path


_WORDS = ["--api-key", "--token", "--verbose", "-H", "sk-PROP-1", "tok-PROP-2",
          "--password=pw-PROP-3", "Authorization: Bearer brr-PROP-4", "KEY=v-PROP-5",
          "https://u:pw-PROP-6@h.example/x", "${GH_TOKEN}", "plain", "--stdio"]


def test_property_sealed_lists_replay_snapshot_and_round_trip(tmp_path: Path) -> None:
    """Random lists mixing secrets and plain words: the replay of the log, a snapshot's
    round trip and a past read all give the head's document; verify passes; the gateway
    gets each list exactly as written; saving the head again records nothing."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from projections.config_view import EMPTY_STATE, replay
    from projections.snapshots import decode_state, encode_state

    lists = st.lists(st.sampled_from(_WORDS), max_size=6)
    counter = iter(range(10**6))

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.sampled_from(["args", "models"]), lists), min_size=1,
                    max_size=4))
    def check(writes: list[tuple[str, list[str]]]) -> None:
        store = SqliteConfigStore(tmp_path / f"p{next(counter)}.db")
        try:
            last: dict[str, list[str]] = {}
            for field, value in writes:
                path = (("mcp", "servers", "gh", "args") if field == "args"
                        else ("providers", "openai", "models"))
                run(store.edit({path: value}))
                last[field] = value
            ledger = store.ledger
            head = ledger.head_state()
            full = replay(EMPTY_STATE, list(ledger.backend.read()))
            assert (full.config, full.hash) == (head.config, head.hash)
            snap = decode_state(encode_state(full))
            assert snap.config == head.config
            assert ledger.state_at(head.seq).config == head.config
            assert ledger.verify().ok
            gw = run(store.load_effective(env={}))
            if "args" in last:
                assert gw.mcp.servers["gh"].args == last["args"]
            if "models" in last:
                assert gw.providers.entries["openai"].models == last["models"]
            assert not ledger.save_typed(ledger.typed()).appended
            assert not ledger.save_documents(ledger.head_state().config).appended
        finally:
            store.ledger.close()

    check()


def test_another_writers_list_secrets_reach_this_processs_view_plain(tmp_path: Path) -> None:
    """A store that catches up on another process's events (re-converting only the
    sections they changed) gives `update_raw`'s fn and `load_raw` the plain values. (A
    real process: stores of one process share their views through the group commit.)"""
    import json
    import subprocess
    import sys

    db = tmp_path / "shared.db"
    b = SqliteConfigStore(db)
    try:
        run(b.update_raw(lambda c: setattr(c.server, "port", 8001)))
        run(b.load_raw())  # b holds a typed view of the head
        code = (
            "import asyncio, json, sys\n"
            "from ledger import SqliteConfigStore\n"
            "s = SqliteConfigStore(sys.argv[1])\n"
            "asyncio.run(s.edit({tuple(k.split('/')): v for k, v in "
            "json.loads(sys.argv[2]).items()}))\n"
            "s.ledger.close()\n")
        sets = {"mcp/servers/gh/command": "gh-mcp", "mcp/servers/gh/args": ARGS,
                "mcp/servers/gh/url": URL}
        subprocess.run([sys.executable, "-c", code, str(db), json.dumps(sets)], check=True)
        seen: dict[str, object] = {}
        run(b.update_raw(lambda c: seen.setdefault("args", list(c.mcp.servers["gh"].args))))
        assert seen["args"] == ARGS
        assert run(b.load_raw()).mcp.servers["gh"].url == URL
        assert run(b.load_effective(env={})).mcp.servers["gh"].args == ARGS
        assert not run(b.update_raw(lambda c: setattr(c.mcp.servers["gh"], "args",
                                                      list(ARGS)))).appended
    finally:
        b.ledger.close()
