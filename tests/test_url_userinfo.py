"""A URL's userinfo is read as one unit: user, an optional `:`, an optional password;
it is a credential when either part is one (review A round 2, finding 5; issue 14).
`https://TOKEN:@host` (a token as the user name with an empty password, the form
curl, git and requests use for a token-only userinfo) was matched by neither rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.schema.secret_policy import url_has_credential, url_has_password
from tests.operator import make_site

TOKEN = "ghp_Zq8xW3vN5tR7yK2mP4sL6Tb9"  # fixed random-looking test value


@pytest.mark.parametrize("url", [
    f"https://{TOKEN}:@api.example/v1",          # token as user, empty password
    f"https://{TOKEN}@api.example/v1",           # token alone
    "https://bot:Pw9x7Qk2LmZ@api.example/v1",    # user and password
    f"see https://a.example/ and https://{TOKEN}:@b.example/",  # the second URL
    f"git+ssh://{TOKEN}:@[2001:db8::1]:22/repo",
])
def test_a_credential_in_either_part_of_the_userinfo(url: str) -> None:
    assert url_has_credential(url), url


@pytest.mark.parametrize("url", [
    "https://api.example/v1",
    "https://user@api.example/v1",          # a plain user name is no credential
    "https://user:@api.example/v1",         # nor is it with an empty password
    "https://${GH_TOKEN}:@api.example/v1",  # a reference, not the token
    "https://user:${PASSWORD}@api.example/v1",
    "https://example.com/a:b@c",            # no userinfo: `@` in the path
])
def test_no_credential(url: str) -> None:
    assert not url_has_credential(url), url


def test_the_password_rule_still_needs_a_password() -> None:
    assert url_has_password("https://u:pw9@h.example/")
    assert not url_has_password(f"https://{TOKEN}:@h.example/")


def test_a_token_as_user_with_an_empty_password_is_sealed_in_a_typed_field(
        tmp_path: Path) -> None:
    site = make_site(tmp_path)
    url = f"https://{TOKEN}:@api.example/v1"
    site.ok("set", "providers.openai.base_url", url)
    shown = site.ok("get", "providers.openai.base_url").out + site.ok("log").out
    assert TOKEN not in shown
    stored = b"".join(p.read_bytes() for p in site.data_dir.glob("moltis.db*"))
    assert TOKEN.encode() not in stored
