"""Issue 14, finding 1: secrets in free-form channel maps on every backend.

Once a token is stored in a free-form channel account, `update_raw`/`save_raw` must
keep working (even for unrelated keys), and `load_effective()` must hand the gateway
the plain token, never the stored reference.
"""

from __future__ import annotations

import pytest

from ledger import MoltisConfig
from tests.conftest import run

# (channel path, secret key) for every free-form channel type with secrets
CHANNEL_SECRETS = [
    (("telegram", "bot1"), "token"),
    (("discord", "main"), "token"),
    (("slack", "ws"), "bot_token"),
    (("slack", "ws"), "signing_secret"),
    (("msteams", "corp"), "app_password"),
    (("nostr", "relay"), "secret_key"),
    (("telephony", "line"), "auth_token"),
    (("matrix", "home"), "access_token"),
]


def _channel_map(cfg: MoltisConfig, kind: str) -> dict:
    named = getattr(cfg.channels, kind, None)
    if isinstance(named, dict) and kind != "entries":
        return named
    return cfg.channels.entries.setdefault(kind, {})


def _set_account(kind: str, account: str, key: str, value: str):
    def fn(cfg: MoltisConfig) -> None:
        _channel_map(cfg, kind)[account] = {"enabled": True, key: value}
    return fn


@pytest.mark.parametrize(("where", "key"), CHANNEL_SECRETS,
                         ids=[f"{w[0]}.{k}" for w, k in CHANNEL_SECRETS])
def test_update_raw_and_load_effective_with_a_free_form_channel_secret(store_factory, where,
                                                                       key):
    kind, account = where
    token = f"tok-{kind}-{key}-5f1e9a"
    store = store_factory()
    run(store.update_raw(_set_account(kind, account, key, token), reason="add account"))

    # an unrelated write works (it used to fail: cannot set ...token."$secret")
    commit = run(store.update_raw(lambda c: setattr(c.server, "port", 8181)))
    assert commit.appended
    assert [c.path for c in commit.changes] == [("server", "port")]
    # save_raw of the whole typed config works too and changes nothing more
    cfg = run(store.load_raw())
    cfg.server.port = 8282
    commit = run(store.save_raw(cfg))
    assert [c.path for c in commit.changes] == [("server", "port")]

    # the gateway gets the plain token
    eff = run(store.load_effective(env={}))
    got = _channel_map(eff, kind)[account][key]
    assert got == token and isinstance(got, str)
    assert _channel_map(eff, kind)[account]["enabled"] is True

    # a change of the token through update_raw is stored, and read back plain
    def rotate(cfg: MoltisConfig) -> None:
        _channel_map(cfg, kind)[account][key] = token + "-new"

    commit = run(store.update_raw(rotate))
    # (Matrix accounts sit one level deeper in the untyped `entries` map, so its whole
    # account table is replaced)
    assert all(c.path[:3] == ("channels", kind, account) for c in commit.changes)
    if store.backend_name != "file":  # the file store keeps Moltis's plaintext file
        assert all(token not in repr(c) for c in commit.changes)
    eff = run(store.load_effective(env={}))
    assert _channel_map(eff, kind)[account][key] == token + "-new"
    # and nothing else moved
    assert run(store.update_raw(lambda c: None)).appended is False
    # reading the gateway's plain view never writes plaintext back into the stored
    # document (free-form maps are shared with it)
    run(store.load_effective(env={}))
    run(store.load_raw())
    stored = run(store.raw_document())["channels"][kind][account][key]
    if store.backend_name != "file":
        from ledger.core.secret_refs import SecretRef

        assert isinstance(stored, SecretRef)
        head = store.ledger.head_state().config["channels"][kind][account][key]
        assert isinstance(head, SecretRef), type(head)


def test_a_shredded_channel_token_reaches_the_gateway_masked(ledger_factory):
    """A token that cannot be opened any more is a masked `Secret` in what the gateway
    gets (never the stored reference as a dict, never a crash)."""
    from ledger.core.secret_refs import Secret, SecretRef

    store = ledger_factory()
    run(store.update_raw(_set_account("telegram", "bot1", "token", "tok-shred-me-0001")))
    assert run(store.load_effective(env={})).channels.telegram["bot1"]["token"] == (
        "tok-shred-me-0001")
    ref = store.ledger.head_state().config["channels"]["telegram"]["bot1"]["token"]
    assert isinstance(ref, SecretRef)
    store.ledger.shred([ref], reason="leaked")
    got = run(store.load_effective(env={})).channels.telegram["bot1"]["token"]
    assert isinstance(got, Secret) and got.is_destroyed
    assert "tok-shred-me" not in repr(got)
    assert run(store.update_raw(lambda c: setattr(c.server, "port", 8383))).appended
