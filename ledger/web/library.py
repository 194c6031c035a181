"""The web view's one door into the library: every read and the rollback go through
here, over the public store API and the same functions the CLI calls (`iter_history`'s
event reader, `ops.event_json`, `ops.diff_states`, `ops.blame`, `ops.rollback`,
`providers.describe_entry`, the store's `verify()` and `watch()`).

Keeping these imports in one module keeps the rest of `ledger.web` independent of where
the library's modules live. Every function returns JSON-safe data in the shapes the
CLI's `--json` output uses for the same data, already redacted (secrets are masks with
a fingerprint; no value is ever opened here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.core.events import Event
from ledger.core.keypaths import KeyPath, format_path, parse_path
from ledger.engine.queries import resolve_ref
from ledger.errors import (
    ConflictError,
    InputError,
    InvalidRefError,
    LedgerError,
    NotSupportedError,
    ReadOnlyError,
    StoreBusyError,
    VerificationError,
)
from ledger.ops.display import display_doc, effective_shown, event_json
from ledger.ops.history import blame as blame_state
from ledger.ops.history import diff_states
from ledger.ops.history import rollback as run_rollback
from ledger.stores.ledger_store import LedgerConfigStore
from ledger.stores.providers import describe_entry

__all__ = [
    "ConflictError",
    "InputError",
    "InvalidRefError",
    "LedgerConfigStore",
    "LedgerError",
    "NotSupportedError",
    "ReadOnlyError",
    "StoreBusyError",
    "TimelineFilter",
    "VerificationError",
    "blame",
    "config_tree",
    "diff",
    "doc_path",
    "effective_tree",
    "event_detail",
    "format_path",
    "head_seq",
    "providers",
    "rollback",
    "seq_of",
    "show",
    "signing_key_fingerprint",
    "target_event",
    "timeline",
    "verify",
    "watch",
]

# The most events one timeline request examines when a filter (actor, path, source)
# must look at each event: the page ends early with a cursor to continue from, so a
# request costs the same on a 1,000-event ledger and on a 1,000,000-event one.
SCAN_BUDGET = 5_000
MAX_PAGE = 200


def head_seq(store: LedgerConfigStore) -> int:
    return store.ledger.head_state().seq


def seq_of(store: LedgerConfigStore, ref: str | None, *, lower_bound: bool = False) -> int:
    """A REF (the CLI's words: 12, -3, head, a time) as a seq; empty/None is the head.
    `lower_bound`: the REF starts a range, as the CLI's (`ledger.engine.queries`)."""
    if ref is None or not ref.strip():
        return head_seq(store)
    return resolve_ref(store.ledger, ref, lower_bound=lower_bound)


def doc_path(text: str) -> tuple[str, KeyPath]:
    """`keys:openai.apiKey` names provider_keys.json; anything else moltis.toml."""
    if text.startswith("keys:"):
        return "keys", parse_path(text[5:]) if text[5:].strip() else ()
    return "config", parse_path(text)


# ---------------------------------------------------------------------------------
# the timeline: keyset pages by seq


@dataclass(frozen=True)
class TimelineFilter:
    path: str | None = None
    actor: str | None = None
    source: str | None = None
    since: str | None = None
    until: str | None = None

    @property
    def scans(self) -> bool:
        """Whether the filter looks into each event (time bounds are seq bounds)."""
        return bool(self.path or self.actor or self.source)

    def query(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v}


def timeline(store: LedgerConfigStore, filt: TimelineFilter, *, before: int | None = None,
             limit: int = 50) -> dict[str, Any]:
    """One page of events, newest first: `log --json`'s shape ({"head_seq", "events"})
    plus the keyset cursor `next_before` (None on the last page) and `scanned_to`, the
    oldest seq this request looked at.

    Time bounds become seq bounds by the binary search REFs use; actor, path and source
    are checked per event, newest first, stopping at `limit` matches or after
    SCAN_BUDGET events, so no request reads the whole log."""
    ledger = store.ledger
    head = ledger.head_state().seq
    limit = max(1, min(limit, MAX_PAGE))
    lo = resolve_ref(ledger, filt.since, lower_bound=True) if filt.since else 0
    hi = resolve_ref(ledger, filt.until) if filt.until else head
    if before is not None:
        hi = min(hi, before - 1)
    doc, prefix = doc_path(filt.path) if filt.path else (None, None)
    events: list[dict[str, Any]] = []
    scanned_to = hi + 1
    if hi > lo:
        budget = SCAN_BUDGET if filt.scans else limit
        reader = ledger.events(after=lo, until=hi, descending=True,
                               limit=None if filt.scans else limit)
        try:
            for ev in reader:
                scanned_to = ev.seq
                if _matches(ev, filt, doc, prefix):
                    events.append(event_json(ev, ledger.vault))
                    if len(events) >= limit:
                        break
                budget -= 1
                if budget <= 0:
                    break
        finally:
            _close(reader)  # ends the read (SQLite: its read transaction) now
    more = scanned_to > lo + 1
    return {"head_seq": head, "events": events, "next_before": scanned_to if more else None,
            "scanned_to": scanned_to}


def _close(reader: Iterator[Any]) -> None:
    close = getattr(reader, "close", None)
    if close is not None:
        close()


def _matches(ev: Event, filt: TimelineFilter, doc: str | None, prefix: KeyPath | None) -> bool:
    if filt.actor and ev.actor != filt.actor:
        return False
    if filt.source and ev.source != filt.source:
        return False
    return prefix is None or ev.touches(prefix, doc)


def event_detail(store: LedgerConfigStore, seq: int) -> dict[str, Any] | None:
    """`log --json`'s event object, plus `diff`: `diff --json` from seq-1 to seq."""
    ledger = store.ledger
    head = ledger.head_state().seq
    if not 1 <= seq <= head:
        return None
    ev = ledger.event(seq)
    if ev is None:
        raise VerificationError(f"event {seq} is missing from the log; run verify", seq)
    doc = event_json(ev, ledger.vault)
    doc["diff"] = diff(store, seq - 1, seq)
    return doc


def diff(store: LedgerConfigStore, a: int, b: int, path: str | None = None) -> dict[str, Any]:
    """`diff --json`: {"from", "to", "changes": [{doc, path, kind, old, new}]}."""
    ledger = store.ledger
    prefix = parse_path(path) if path else ()
    entries = diff_states(ledger.state_at(a), ledger.state_at(b), ledger.vault, prefix)
    return {"from": a, "to": b, "changes": [dataclasses.asdict(e) for e in entries]}


# ---------------------------------------------------------------------------------
# the configuration at a point, blame


def show(store: LedgerConfigStore, seq: int) -> dict[str, Any]:
    """`show --json`: the stored document at seq, secrets masked."""
    ledger = store.ledger
    return display_doc(ledger.state_at(seq).config, ledger.vault)


def blame(store: LedgerConfigStore, seq: int, path: str | None = None) -> dict[str, Any]:
    """`blame --json`: {"seq", "entries": [{doc, path, seq, actor, time, reason, source}]}."""
    ledger = store.ledger
    doc, prefix = doc_path(path) if path else (None, ())
    entries = [dataclasses.asdict(e) for e in blame_state(ledger, ledger.state_at(seq), prefix)
               if doc is None or e.doc == doc]
    return {"seq": seq, "entries": entries}


def _leaves(doc: Mapping[str, Any], prefix: KeyPath = ()) -> list[tuple[KeyPath, Any]]:
    out: list[tuple[KeyPath, Any]] = []
    for key, value in doc.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            out += _leaves(value, path)
        else:
            out.append((path, value))
    return out


def config_tree(store: LedgerConfigStore, seq: int) -> dict[str, Any]:
    """The stored document at seq as rows: per leaf its value (masked) and the event
    that set it (blame)."""
    ledger = store.ledger
    state = ledger.state_at(seq)
    who = {(e.doc, e.path): e for e in blame_state(ledger, state)}
    rows = []
    for path, value in _leaves(display_doc(state.config, ledger.vault)):
        text = format_path(path)
        entry = who.get(("config", text))
        rows.append({"path": text, "keys": list(path), "value": value,
                     "set_by": dataclasses.asdict(entry) if entry else None})
    return {"seq": seq, "effective": False, "rows": rows}


async def effective_tree(store: LedgerConfigStore) -> dict[str, Any]:
    """The effective config (defaults, stored, MOLTIS_* environment, flags) at the head,
    per leaf with the layer that won (`source_metadata()`): the event for the ledger
    layer, the variable for the environment."""
    shown = await effective_shown(store)  # secrets masked (load_effective reveals them)
    meta = await store.source_metadata()
    rows = []
    for path, value in _leaves(shown):
        text = format_path(path)
        prov = meta.get(text)
        rows.append({"path": text, "keys": list(path), "value": value,
                     "layer": prov.to_dict() if prov is not None else None})
    return {"seq": head_seq(store), "effective": True, "rows": rows}


# ---------------------------------------------------------------------------------
# verify, providers


async def verify(store: LedgerConfigStore) -> dict[str, Any]:
    """`verify --json`: {"ok", "events", "head_seq", "head_hash", "first_bad_seq",
    "problem", "key_fingerprint", "signed_seq", "mac_seq", "notes"}: the fingerprint is that of the
    key that signed the head (None without a signature or the ledger key)."""
    import asyncio

    report = await asyncio.to_thread(store.ledger.verify)
    out: dict[str, Any] = {"ok": report.ok, "events": report.events,
                           "head_seq": report.head_seq, "head_hash": report.head_hex,
                           "first_bad_seq": report.first_bad_seq, "problem": report.problem,
                           "key_fingerprint": report.key_fingerprint,
                           "signed_seq": report.signed_seq, "mac_seq": report.mac_seq,
                           "notes": list(report.notes)}
    return out


def signing_key_fingerprint(store: LedgerConfigStore) -> str | None:
    """The head-signing key's fingerprint, if this version of the store offers one
    (a public attribute or method of that name); None otherwise."""
    found = getattr(store, "signing_key_fingerprint", None)
    if callable(found):
        found = found()
    return found if isinstance(found, str) and found else None


async def providers(store: LedgerConfigStore) -> dict[str, Any]:
    """`providers list --json` ({name: entry}, keys masked with their fingerprint), and
    per provider who set each field (blame of the key store)."""
    entries = await store.providers.list()
    ledger = store.ledger
    who: dict[str, dict[str, Any]] = {}
    for e in blame_state(ledger, ledger.head_state()):
        if e.doc == "keys":
            keys = parse_path(e.path)
            field = format_path(keys[1:]) if len(keys) > 1 else ""
            who.setdefault(keys[0], {})[field] = dataclasses.asdict(e)
    return {"providers": {name: describe_entry(entry) for name, entry in entries.items()},
            "set_by": who}


# ---------------------------------------------------------------------------------
# rollback


def rollback(store: LedgerConfigStore, target: int, *, dry_run: bool, actor: str,
             reason: str | None, expected_seq: int | None = None) -> dict[str, Any]:
    """`rollback --json`: {"target", "dry_run", "appended", "seq", "changes",
    "left_unset"}; the event it appends is the CLI's (source `rollback`)."""
    ledger = store.ledger
    before = ledger.head_state()
    result = run_rollback(ledger, target, dry_run=dry_run, actor=actor, reason=reason,
                          expected_seq=expected_seq)
    commit = result.commit
    if dry_run or commit is None or not commit.appended:
        after = ledger.state_at(target)
    else:
        before, after = ledger.state_at(commit.seq - 1), ledger.state_at(commit.seq)
    entries = [dataclasses.asdict(e) for e in diff_states(before, after, ledger.vault)]
    appended = commit is not None and commit.appended
    seq = commit.seq if commit is not None else before.seq
    return {"target": target, "dry_run": dry_run, "appended": appended, "seq": seq,
            "changes": entries, "left_unset": result.left_unset}


def target_event(store: LedgerConfigStore, seq: int) -> dict[str, Any] | None:
    ev = store.ledger.event(seq) if seq else None
    return event_json(ev, store.ledger.vault) if ev is not None else None


# ---------------------------------------------------------------------------------
# live updates


async def watch(store: LedgerConfigStore, after: int | None, filt: TimelineFilter,
                poll_interval: float = 0.25) -> AsyncIterator[dict[str, Any]]:
    """New events that pass the timeline filter (redacted, `watch --json`'s objects),
    from the store's `watch()`: polling on SQLite, LISTEN/NOTIFY on PostgreSQL."""
    vault = store.ledger.vault
    doc, prefix = doc_path(filt.path) if filt.path else (None, None)
    events = store.watch(poll_interval=poll_interval, after=after)
    try:
        async for ev in events:
            if _matches(ev, filt, doc, prefix):
                yield event_json(ev, vault)
    finally:
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()
