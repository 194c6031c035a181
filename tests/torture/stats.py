"""Trial counters the torture tests fill in, printed in one line at the end of the run."""

from __future__ import annotations

import os
import random
import threading
from collections import Counter

_lock = threading.Lock()
COUNTS: Counter[str] = Counter()
# One seed per run for every random choice the trials make (kill times, tamperings):
# printed in the summary, and LEDGER_TORTURE_SEED=N replays a run's choices.
SEED = int(os.environ.get("LEDGER_TORTURE_SEED") or random.SystemRandom().randrange(10**6))


def add(name: str, n: int = 1) -> None:
    with _lock:
        COUNTS[name] += n


def summary() -> str | None:
    """`torture: 60 crashes survived, 1000 tamperings detected (100%), ...` or None."""
    c = COUNTS
    if not c:
        return None
    parts: list[str] = []
    if c["crash_sqlite"] or c["crash_file"]:
        phases = ", ".join(f"{k[6:]} {v}" for k, v in c.most_common() if k.startswith("phase:"))
        parts.append(f"{c['crash_sqlite'] + c['crash_file']} crashes survived "
                     f"({c['crash_sqlite']} SQLite appends killed in: {phases}; "
                     f"{c['killed_in_snapshot_txn']} in snapshot-writing transactions; "
                     f"{c['crash_file']} file writes; {c['acked_checked']} acknowledged "
                     "writes found intact)")
    if c["tamper_trials"]:
        pct = 100.0 * c["tamper_detected"] / c["tamper_trials"]
        classes = ", ".join(f"{k[13:]} {v}" for k, v in sorted(c.items())
                            if k.startswith("tamper_class:"))
        parts.append(f"{c['tamper_detected']} of {c['tamper_trials']} tamperings detected "
                     f"({pct:.0f}%, first bad seq named; {c['tamper_cli']} through the CLI; "
                     f"per class: {classes})")
    if c["bad_inputs"]:
        parts.append(f"{c['bad_inputs']} bad inputs refused")
    if c["concurrent_ops"]:
        parts.append(f"{c['concurrent_ops']} concurrent writes by {c['writers']} processes "
                     f"({c['conflicts']} conflicts surfaced as ConflictError)")
    if c["disk_full_refused"] or c["read_only_refused"]:
        parts.append(f"{c['disk_full_refused']} writes refused on a full disk, "
                     f"{c['read_only_refused']} on read-only media")
    if c["hostile_texts"]:
        parts.append(f"{c['hostile_texts']} control/bidi texts through "
                     f"{c['hostile_outputs']} outputs, none raw")
    if c["symlink_traps"]:
        parts.append(f"{c['symlink_traps']} symlink traps at write targets, none followed")
    if c["rotation_kills"]:
        parts.append(f"{c['rotation_kills']} key rotations killed at every step "
                     f"({c['rotation_committed']} after the commit), all finished with "
                     "nothing lost")
    if c["private_files"]:
        parts.append(f"{c['private_files']} created files/folders private")
    return f"torture (LEDGER_TORTURE_SEED={SEED}): " + ", ".join(parts)
