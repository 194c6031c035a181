"""The one secret policy: which leaves of the config and keys documents are secrets.

A leaf is a secret, sealed (encrypted at rest, fingerprinted, shreddable) and masked in
every output, when

1. the schema types it `Secret` (provider `api_key`, MCP and external-agent `env` and
   `headers`, `[env]`, …), or it is one of `FREEFORM_SECRETS` (Moltis's own
   `ChannelType::secret_fields`, e.g. `channels.telegram.<account>.token`);
2. it is a string at a position the schema does not type (a key in a free-form map such
   as a channel account or a tool control, an unknown key, an unknown field of a
   `provider_keys.json` entry) and its *name* looks like a secret (`SECRET_WORDS`
   below): a typo such as `providers.x.apikey` or an `api_key` in an unknown section
   is sealed instead of living in plaintext in the chain forever;
3. it is a string at such an untyped position that is a URL with a password in its
   userinfo (`https://user:pass@host`).

Name rule (2): the key is split into words (`_`, `-`, `.`, spaces and camelCase
boundaries, lowercased); it is secret-shaped when one of its words, or two adjacent
words joined (`api`+`key`), is in `SECRET_WORDS`, unless one of its words is in
`NOT_SECRET_WORDS` (a `token_file`, `key_path`, `public_key` or `auth_mode` names
where a secret is, or how it is used, not the secret). The list follows what Moltis
redacts (token, secret, password, api_key/apikey, key, credential, auth, bearer).

Positions the schema types as plain values (say `server.bind`) are never sealed by the
name or URL rules: the typed config must keep accepting them. The gateway always
receives plain values either way (`ledger.typed.freeform`). What the rules cannot
reach: a secret inside a list (MCP `args = ["--token", "…"]`, `[[hooks.hooks]] env`, which
Moltis types as plain strings inside an array of tables, stored as one value) or in a
typed plain-string field (a URL with a password in `providers.x.base_url`) stays as
given; the list-valued ones need a change of the stored format to be sealed.
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import Any, Final

from ledger.core.keypaths import KeyPath

__all__ = ["NOT_SECRET_WORDS", "SECRET_WORDS", "is_secret_name", "url_has_password"]

SECRET_WORDS: Final = frozenset({
    "token", "secret", "password", "passwd", "pwd", "passphrase", "apikey", "key",
    "credential", "credentials", "auth", "authorization", "bearer", "cookie",
    "privatekey", "accesskey", "secretkey", "clientsecret", "sessionkey",
})
NOT_SECRET_WORDS: Final = frozenset({
    "public", "path", "file", "dir", "mode", "type", "kind", "id", "name", "names", "url",
    "uri", "env", "enabled", "enable", "header", "prefix", "limit", "count", "max", "min",
    "ttl", "expiry", "expires", "length", "size", "format", "scheme", "method", "required",
    "command", "provider", "timeout", "secs", "ms", "fingerprint", "hint", "help",
    "label", "description", "tokens",
})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#@\s:]*:[^/?#@\s]+@")


@functools.lru_cache(maxsize=4096)
def is_secret_name(key: str) -> bool:
    """True if a key's name looks like it holds a secret (see the module docstring)."""
    words = [w.lower() for w in _WORD.findall(key)]
    if not words or any(w in NOT_SECRET_WORDS for w in words):
        return False
    if any(w in SECRET_WORDS for w in words):
        return True
    return any(a + b in SECRET_WORDS for a, b in itertools.pairwise(words))


def url_has_password(value: Any) -> bool:
    """True for a string holding a URL with `user:password@` (a credential)."""
    return isinstance(value, str) and "@" in value and _URL_PASSWORD.search(value) is not None


def secret_by_name(path: KeyPath) -> bool:
    """Rule 2 for a path at an untyped position: its last key's name."""
    return bool(path) and is_secret_name(path[-1])
