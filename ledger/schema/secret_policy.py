"""The one secret policy: which leaves of the config and keys documents are secrets.

A leaf is a secret, sealed (encrypted at rest, fingerprinted, shreddable) and masked in
every output, when

1. the schema types it `Secret` (provider `api_key`, MCP and external-agent `env` and
   `headers`, `[env]`, …), or it is one of
   `FREEFORM_SECRETS` (Moltis's own `ChannelType::secret_fields`, e.g.
   `channels.telegram.<account>.token`);
2. it is a string at a position the schema does not type (a key in a free-form map such
   as a channel account or a tool control, an unknown key, an unknown field of a
   `provider_keys.json` entry) and its *name* looks like a secret (`SECRET_WORDS`
   below): a typo such as `providers.x.apikey` or an `api_key` in an unknown section
   is sealed instead of living in plaintext in the chain forever. The name rule also
   applies to maps the schema marks `sealed_by_name()`: a `[[hooks.hooks]]` entry's
   `env`, plain strings in Moltis (`API_TOKEN` is sealed, `HOOK_LOG` is not);
3. it is a string anywhere (typed or not: `providers.x.base_url`, `mcp.servers.x.url`)
   holding a URL with credentials in its userinfo (`url_has_credential`): a password
   (`https://user:pass@host`) or a token as the user, alone or with an empty password
   (`https://ghp_…@host`, `https://ghp_…:@host`: at least 16 characters with letters and
   digits, so `git@host` is a user name, not a secret); the userinfo is read as one
   unit (user, optional `:`, optional password), every URL of the string. The
   whole value is sealed and shown as one mask; the gateway gets the whole URL;
4. it is an element of a list (`secret_items`): the value after a secret-shaped flag
   (`["--api-key", "sk-…"]`), a secret-shaped `--name=value` or `NAME=value`, a header
   with a secret-shaped name or a `Bearer`/`Basic`/`Token` credential
   (`Authorization: Bearer …`), or a URL with credentials (rule 3). Tables inside lists
   (`[[hooks.hooks]]`, tables in free-form or unknown places) follow rules 1-3 for their
   keys. Such elements are stored as references inside the list (`ledger.core.events`).

Name rule (2): the key is split into words (`_`, `-`, `.`, spaces and camelCase
boundaries, lowercased); it is secret-shaped when one of its words, or two adjacent
words joined (`api`+`key`), is in `SECRET_WORDS`, unless one of its words is in
`NOT_SECRET_WORDS` (a `token_file`, `key_path`, `public_key` or `auth_mode` names
where a secret is, or how it is used, not the secret). The list follows what Moltis
redacts (token, secret, password, api_key/apikey, key, credential, auth, bearer).

Positions the schema types as plain values (say `server.bind`) are never sealed by the
name rule: the typed config must keep accepting them. A credential that is only a
`${VAR}` reference (`--token ${GH_TOKEN}`, `https://bot:${PW}@host`) is not a secret
itself and stays readable. The gateway always receives plain values
(`ledger.typed.freeform`, `ledger.typed.sealed_plain`). What the rules cannot reach:
a credential inside a longer plain string (`command = "gh --token=…"`), a short token
in a URL's userinfo, and copies made elsewhere.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from typing import Any, Final

from ledger.core.keypaths import KeyPath

__all__ = ["NOT_SECRET_WORDS", "SECRET_WORDS", "is_secret_name", "secret_items",
           "url_has_credential", "url_has_password"]

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
# a URL's userinfo as one unit: user, an optional `:`, an optional password, then `@`
# (`https://TOKEN:@host` is a token with an empty password, not "no password")
_URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://([^/?#@\s:]*)(?::([^/?#@\s]*))?@")
_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_FLAG = re.compile(r"--?([A-Za-z][A-Za-z0-9_.\-]+)")
_ASSIGN = re.compile(r"-{0,2}([A-Za-z][A-Za-z0-9_.\-]*)=(.+)", re.DOTALL)
_HEADER = re.compile(r"([A-Za-z][A-Za-z0-9\-_]*)[ \t]*:[ \t]*(\S.*)", re.DOTALL)
_SCHEME = re.compile(r"(?i)(?:bearer|basic|token)[ \t]+(\S+)")


@functools.lru_cache(maxsize=4096)
def is_secret_name(key: str) -> bool:
    """True if a key's name looks like it holds a secret (see the module docstring)."""
    words = [w.lower() for w in _WORD.findall(key)]
    if not words or any(w in NOT_SECRET_WORDS for w in words):
        return False
    if any(w in SECRET_WORDS for w in words):
        return True
    return any(a + b in SECRET_WORDS for a, b in itertools.pairwise(words))


def _real(credential: str) -> bool:
    """A credential given as text, not as a `${VAR}` reference to one."""
    return _REFERENCE.fullmatch(credential.strip()) is None


def _userinfos(value: Any) -> Iterator[tuple[str, str]]:
    """(user, password) of every URL userinfo in the string ("" for an absent part)."""
    if isinstance(value, str) and "@" in value:
        for found in _URL_USERINFO.finditer(value):
            yield found.group(1), found.group(2) or ""


def _token_user(user: str) -> bool:
    """A user name shaped like a token (GitHub's `https://TOKEN@host`), not a name."""
    return (len(user) >= 16 and _real(user) and any(c.isdigit() for c in user)
            and any(c.isalpha() for c in user))


def url_has_password(value: Any) -> bool:
    """True for a string holding a URL with `user:password@` (a credential)."""
    return any(password and _real(password) for _, password in _userinfos(value))


def url_has_credential(value: Any) -> bool:
    """Rule 3: a URL whose userinfo holds a credential in either part: a password, or a
    token as the user (alone, or with an empty password: `https://TOKEN:@host`)."""
    return any((password and _real(password)) or _token_user(user)
               for user, password in _userinfos(value))


def _secret_text(text: str) -> bool:
    """An element that is a credential by its own shape (rule 4 without the pair)."""
    if url_has_credential(text):
        return True
    assign = _ASSIGN.fullmatch(text)
    if assign is not None and "://" not in assign.group(1):
        return is_secret_name(assign.group(1)) and _real(assign.group(2))
    header = _HEADER.fullmatch(text)  # matched once: every written list element comes here
    scheme = _SCHEME.search(text)
    if scheme is not None and scheme.start() in (0, header.start(2) if header else -1):
        return _real(scheme.group(1))
    return (header is not None and not header.group(2).startswith("//")
            and is_secret_name(header.group(1)) and _real(header.group(2)))


def _secret_flag(text: str) -> bool:
    flag = _FLAG.fullmatch(text)
    return flag is not None and is_secret_name(flag.group(1))


def secret_items(items: list[Any]) -> list[int]:
    """Rule 4: the indexes of a list's string elements that are secrets."""
    out: list[int] = []
    after_flag = False
    for i, item in enumerate(items):
        if not isinstance(item, str):
            after_flag = False
            continue
        if (after_flag and not item.startswith("--") and _real(item)) or _secret_text(item):
            out.append(i)
            after_flag = False
        else:
            after_flag = _secret_flag(item)
    return out


def secret_by_name(path: KeyPath) -> bool:
    """Rule 2 for a path at an untyped position: its last key's name."""
    return bool(path) and is_secret_name(path[-1])
