"""Issue 16, figure i16k: the head read `load_raw()` hands out a private copy.

The copy is decoded from the head view's bytes, and the free-form secrets in it (channel
tokens, which the schema types as plain JSON) are revived at the places the first
decode of those bytes found, instead of walking every free-form value on each read.
What must hold whatever makes it fast: no mutable object of a copy is shared with the
view, another copy or the ledger's state, so a caller changing its copy changes nothing
read later; and every free-form secret is a `Secret` in every copy, at the right place,
also after a write moved, added or removed them.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ledger import MoltisConfig, Secret, SqliteConfigStore
from tests.conftest import run


def _mutables(obj: Any, out: dict[int, Any]) -> dict[int, Any]:
    """Every mutable object reachable from `obj` (by id; the object kept alive)."""
    if isinstance(obj, msgspec.Struct):
        out[id(obj)] = obj
        for name in obj.__struct_fields__:
            _mutables(getattr(obj, name), out)
    elif isinstance(obj, dict):
        out[id(obj)] = obj
        for v in obj.values():
            _mutables(v, out)
    elif isinstance(obj, list):
        out[id(obj)] = obj
        for v in obj:
            _mutables(v, out)
    elif isinstance(obj, Secret):
        out[id(obj)] = obj  # holds a cached plaintext once revealed
    return out


def _tokens(cfg: MoltisConfig) -> dict[str, Any]:
    return {name: account.get("token") for name, account in cfg.channels.telegram.items()}


def _add_accounts(cfg: MoltisConfig) -> None:
    cfg.channels.telegram["bot1"] = {"enabled": True, "token": "tok-one-5f1e9a",
                                     "allow": ["a", "b"], "nested": {"k": [1, {"x": 2}]}}
    cfg.channels.telegram["bot2"] = {"token": "tok-two-77aa01"}
    cfg.server.port = 4242


@pytest.fixture
def store(tmp_path: Any) -> SqliteConfigStore:
    store = SqliteConfigStore(tmp_path / "ledger.db")
    run(store.update_raw(_add_accounts))
    return store


def test_two_copies_and_the_shared_view_share_no_mutable_object(store):
    first = run(store.load_raw())
    second = run(store.load_raw())
    shared = run(store.view())
    a, b, v = _mutables(first, {}), _mutables(second, {}), _mutables(shared, {})
    assert len(a) > 50  # the walk did see the config
    assert not a.keys() & b.keys()
    assert not a.keys() & v.keys()
    # nor with the ledger's own state (the raw documents the head view was made from)
    state = store.ledger.head_state()
    raw = _mutables(state.config, {})
    assert not a.keys() & raw.keys()


def test_changing_a_copy_changes_nothing_read_later(store):
    before = msgspec.json.encode(run(store.view()), enc_hook=repr)
    raw_before = run(store.raw_document())
    cfg = run(store.load_raw())
    # change everything a caller could reach: free-form maps, lists, nested tables,
    # the secrets in them, typed fields
    account = cfg.channels.telegram["bot1"]
    account["token"] = "plain-now"
    account["allow"].append("c")
    account["nested"]["k"][1]["x"] = 99
    cfg.channels.telegram.pop("bot2")
    cfg.channels.telegram["bot3"] = {"token": "new"}
    cfg.server.port = 1
    cfg.server.bind = "10.0.0.1"
    again = run(store.load_raw())
    assert again.channels.telegram["bot1"]["allow"] == ["a", "b"]
    assert again.channels.telegram["bot1"]["nested"] == {"k": [1, {"x": 2}]}
    assert set(again.channels.telegram) == {"bot1", "bot2"}
    assert again.server.port == 4242
    assert isinstance(again.channels.telegram["bot1"]["token"], Secret)
    assert msgspec.json.encode(run(store.view()), enc_hook=repr) == before
    assert run(store.raw_document()) == raw_before
    assert run(store.update_raw(lambda c: None)).appended is False


def test_every_copy_has_its_own_secret_at_each_free_form_place(store):
    refs = {n: a["token"].ref for n, a in run(store.view()).channels.telegram.items()}
    assert all(r is not None for r in refs.values())
    copies = [run(store.load_raw()) for _ in range(3)]
    for cfg in copies:
        tokens = _tokens(cfg)
        assert set(tokens) == {"bot1", "bot2"}
        for name, token in tokens.items():
            assert isinstance(token, Secret) and token.ref == refs[name]
    assert copies[0].channels.telegram["bot1"]["token"] is not \
        copies[1].channels.telegram["bot1"]["token"]
    assert copies[0].channels.telegram["bot1"]["token"].reveal() == "tok-one-5f1e9a"
    assert copies[2].channels.telegram["bot2"]["token"].reveal() == "tok-two-77aa01"


def test_copies_follow_the_secrets_after_writes_move_them(store):
    run(store.load_raw())  # the first head's places are found and kept

    def move(cfg: MoltisConfig) -> None:
        cfg.channels.telegram.pop("bot1")
        cfg.channels.telegram["bot0"] = {"token": "tok-zero-0b0b0b"}
        cfg.channels.telegram["bot2"]["token"] = "not-a-reference"  # still a secret leaf

    run(store.update_raw(move))
    cfg = run(store.load_raw())
    tokens = _tokens(cfg)
    assert set(tokens) == {"bot0", "bot2"}
    assert all(isinstance(t, Secret) for t in tokens.values())
    assert tokens["bot0"].reveal() == "tok-zero-0b0b0b"
    assert tokens["bot2"].reveal() == "not-a-reference"
    # a write that removes every free-form secret leaves none behind in the copies
    run(store.update_raw(lambda c: c.channels.telegram.clear()))
    assert run(store.load_raw()).channels.telegram == {}
    # and a change that only touches another section keeps them revived
    run(store.update_raw(lambda c: c.channels.telegram.update(b={"token": "tok-b-1c1c1c"})))
    run(store.load_raw())
    run(store.update_raw(lambda c: setattr(c.server, "port", 5151)))
    cfg = run(store.load_raw())
    assert cfg.channels.telegram["b"]["token"].reveal() == "tok-b-1c1c1c"
    assert cfg.server.port == 5151


def test_another_process_sees_the_same_copies(store, tmp_path):
    # a reader that catches up on the writer's events (its head view is advanced,
    # not decoded from an import) revives the secrets the writer stored
    reader = SqliteConfigStore(tmp_path / "ledger.db")
    run(reader.load_raw())
    run(store.update_raw(lambda c: c.channels.telegram.update(late={"token": "tok-late"})))
    tokens = _tokens(run(reader.load_raw()))
    assert set(tokens) == {"bot1", "bot2", "late"}
    assert all(isinstance(t, Secret) for t in tokens.values())
    assert tokens["late"].reveal() == "tok-late"
