"""Issue 14, finding 7 and the one secret policy: secret-shaped keys outside the schema's
secret fields (typos, unknown sections, free-form maps, unknown key-file fields), URL
and URL userinfo are sealed, masked and shreddable like every other secret; and
the leak scan covers these new paths (database, WAL, logs, errors, exports)."""

from __future__ import annotations

import logging

import pytest

from ledger import SecretDestroyedError, SqliteConfigStore
from ledger.core.secret_refs import SecretRef
from ledger.ops.display import display_doc, event_json
from ledger.ops.export import export_documents
from ledger.schema.introspect import is_secret_path
from ledger.schema.provider_keys import is_key_secret_path
from ledger.schema.secret_policy import is_secret_name, url_has_password
from tests.conftest import run

LEAKS = {
    "typo": "sk-TYPO-apikey-1e5f9c3a",
    "unknown_token": "tok-UNKNOWN-SECTION-7d2b",
    "unknown_password": "pw-UNKNOWN-9a1c4e",
    "freeform": "tok-FREEFORM-api-key-33c1",
    "url": "URLPASS-0b7e1d",
    "keys_extra": "tok-KEYS-EXTRA-5c8e2f",
    "channel": "tok-CHANNEL-TELEGRAM-8d3e",
}


@pytest.mark.parametrize("name", ["token", "api_key", "apikey", "apiKey", "API_KEY", "password",
                                  "client_secret", "secretKey", "bearer", "auth", "credentials",
                                  "private-key", "accessKey", "x-auth-token", "key"])
def test_secret_shaped_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["token_file", "key_path", "public_key", "max_tokens",
                                  "auth_mode", "keyboard", "monkey", "name", "enabled",
                                  "tokenizer", "api_key_env", "url", ""])
def test_names_that_are_not_secrets(name):
    assert not is_secret_name(name)


def test_policy_by_position():
    assert is_secret_path(("providers", "x", "apikey"))  # a typo of api_key
    assert is_secret_path(("providers", "x", "api_key"))  # the typed field
    assert is_secret_path(("mysection", "token"))  # an unknown section
    assert is_secret_path(("channels", "telegram", "bot", "api_key"))  # free-form map
    assert is_secret_path(("channels", "matrix", "home", "password"))
    assert not is_secret_path(("server", "bind"))  # typed plain value: never by name
    assert not is_secret_path(("tools", "agent_timeout_secs"))
    assert is_key_secret_path(("openai", "apiKey"))
    assert is_key_secret_path(("openai", "token"))  # unknown field of an entry
    assert not is_key_secret_path(("openai", "displayName"))
    assert url_has_password("https://user:pw@example.com/x")
    assert not url_has_password("https://user@example.com/x")
    assert not url_has_password("https://example.com/a:b@c")


def write_policy_secrets(store: SqliteConfigStore) -> None:
    store.ledger.edit({("providers", "openai", "apikey"): LEAKS["typo"]}, actor="alice",
                      reason="typo")
    doc = run(store.raw_document())
    doc["mysection"] = {"token": LEAKS["unknown_token"], "inner": {
        "password": LEAKS["unknown_password"]}, "mirror": f"https://u:{LEAKS['url']}@m.example"}
    doc.setdefault("channels", {})["telegram"] = {"bot1": {"token": LEAKS["channel"],
                                                           "api_key": LEAKS["freeform"]}}
    run(store.save_raw(doc, actor="bob"))

    run(store.providers.import_keys({"openai": {"apiKey": "sk-known-0000",
                                                "token": LEAKS["keys_extra"]}}))


def _refs(doc, out):
    if isinstance(doc, SecretRef):
        out.append(doc)
    elif isinstance(doc, dict):
        for v in doc.values():
            _refs(v, out)
    elif isinstance(doc, list):
        for v in doc:
            _refs(v, out)
    return out


def test_secret_shaped_values_are_sealed_masked_and_shreddable(tmp_path, caplog):
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    with caplog.at_level(logging.DEBUG, logger="ledger"):
        write_policy_secrets(store)
        state = store.ledger.head_state()
        assert isinstance(state.config["providers"]["openai"]["apikey"], SecretRef)
        assert isinstance(state.config["mysection"]["token"], SecretRef)
        assert isinstance(state.config["mysection"]["inner"]["password"], SecretRef)
        assert isinstance(state.config["mysection"]["mirror"], SecretRef)
        assert isinstance(state.keys["openai"]["token"], SecretRef)
        # the gateway gets plain values in free-form maps and typed secrets
        eff = run(store.load_effective(env={}))
        assert eff.channels.telegram["bot1"]["api_key"] == LEAKS["freeform"]
        outputs = [repr(display_doc(state.config, store.ledger.vault)),
                   repr(display_doc(state.keys, store.ledger.vault)),
                   repr([event_json(ev, store.ledger.vault) for ev in store.ledger.events()]),
                   repr(export_documents(store.ledger, store.ledger.head_state().seq)),
                   repr(run(store.load_raw()))]
    blob = "\n".join(outputs) + caplog.text + repr([r.__dict__ for r in caplog.records])
    store.ledger.backend.checkpoint()
    disk = b"".join(p.read_bytes() for p in tmp_path.glob("moltis.db*"))
    for name, secret in LEAKS.items():
        assert secret not in blob, f"{name} shown"
        assert secret.encode() not in disk, f"{name} on disk"

    # shreddable: every one of them
    refs = _refs(state.config, []) + _refs(state.keys, [])
    store.ledger.shred(refs, reason="forget them")
    for ref in refs:
        with pytest.raises(SecretDestroyedError):
            store.ledger.vault.open_secret(ref)
    assert store.ledger.verify().ok
    run(store.close())


def test_the_path_walk_agrees_with_the_full_secret_table() -> None:
    """is_secret_path walks only the sections along a path; it must say the same as the
    table of every secret pattern built from the whole schema."""
    from ledger.schema.introspect import is_secret_path, secret_patterns

    patterns = list(secret_patterns())
    assert len(patterns) > 20
    for pattern in patterns:
        path = tuple("acct" if k == "*" else k for k in pattern.split("."))
        assert is_secret_path(path), pattern
        assert not is_secret_path((*path[:-1], "port")) or pattern.endswith("*"), pattern
