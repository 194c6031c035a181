"""Did-you-mean: the known keys nearest to a key path the schema does not know, and the
known provider names nearest to an unknown one.

Moltis's `config check` suggests the closest known key (Levenshtein within a small
distance); here difflib's ratio plays that role over the keys the schema accepts at the
level where the path stops being known (`ledger.schema.introspect.known_prefix`), so
`server.prot` suggests `server.port` and `tools.exec.sandbox.netwrk` suggests
`tools.exec.sandbox.network`. The CLI (`set`/`get`/`unset`, `providers set`) and
`check` use the same functions, so they always agree.
"""

from __future__ import annotations

import difflib

from ledger.core.keypaths import KeyPath, format_path
from ledger.schema.introspect import child_keys, is_known_path, known_prefix
from ledger.schema.provider_keys import KEY_FIELDS, is_key_entry_name, is_known_key_path
from ledger.schema.providers import KNOWN_PROVIDERS

__all__ = ["did_you_mean", "suggest_doc_paths", "suggest_paths", "suggest_providers",
           "unknown_path"]

# difflib ratio below which a candidate is not offered (0.6 is difflib's own default;
# "prot" vs "port" scores 0.75, "sever" vs "server" 0.91)
_CUTOFF = 0.6


def suggest_paths(path: KeyPath, limit: int = 3) -> list[str]:
    """Known paths close to `path` (formatted), nearest first; [] when it is known."""
    depth, node = known_prefix(path)
    if depth == len(path):
        return []
    prefix, key, rest = path[:depth], path[depth], path[depth + 1:]
    names = difflib.get_close_matches(key, child_keys(node), n=limit, cutoff=_CUTOFF)
    # Prefer corrections under which the rest of the path is valid (`sever.port` ->
    # `server.port`), then a second typo fixed one level down (`sever.prot`), then the
    # corrected key alone.
    whole = [(*prefix, name, *rest) for name in names]
    out = [format_path(p) for p in whole if is_known_path(p)]
    if not out and rest:
        for p in whole:
            out.extend(suggest_paths(p, limit=1))
    if not out:
        out = [format_path((*prefix, name)) for name in names]
    return list(dict.fromkeys(out))[:limit]


def unknown_path(doc: str, path: KeyPath) -> bool:
    """True if Moltis does not know this path of the config ("config") or of the key
    store ("keys": an entry, or one of apiKey/baseUrl/models/displayName)."""
    return not (is_known_key_path(path) if doc == "keys" else is_known_path(path))


def suggest_doc_paths(doc: str, path: KeyPath, limit: int = 3) -> list[str]:
    """`suggest_paths` for either document; key-store paths keep their `keys:` prefix."""
    if doc != "keys":
        return suggest_paths(path, limit)
    if len(path) < 2:
        return []
    fields = difflib.get_close_matches(path[1], KEY_FIELDS, n=limit, cutoff=_CUTOFF)
    return [f"keys:{format_path((path[0], f))}" for f in fields]


def suggest_providers(name: str, limit: int = 3) -> list[str]:
    """Known provider names close to `name`; [] when it is a name the key store uses
    (a known provider, `custom-<slug>`, `voice-*`, `phone_*`)."""
    if is_key_entry_name(name):
        return []
    return difflib.get_close_matches(name.lower(), sorted(KNOWN_PROVIDERS), n=limit,
                                     cutoff=_CUTOFF)


def did_you_mean(suggestions: list[str]) -> str:
    """` (did you mean a, b?)` or the empty string."""
    return f" (did you mean {' or '.join(suggestions)}?)" if suggestions else ""
