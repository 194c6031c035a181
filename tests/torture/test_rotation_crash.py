"""`key rotate` killed (SIGKILL, a real process) at every one of its file-system steps:
before the staged key is written, between it and the commit, after the commit at each
re-sealed backup file, each manifest and the mirror, and at the key move. After each,
the operator follows what the tool says (`key rotate --resume` when it names it), and
then every live secret and every sealed backup opens with the one key file, the old
key opens nothing (when the rotation had committed) and is gone from disk, the ledger
verifies, and a new rotation works (tests/rotation_crash.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rotation_crash import (
    build_site,
    crash_rotation,
    expect_rotation_finished,
    rotation_steps,
)
from tests.torture import stats

pytestmark = pytest.mark.torture


def test_a_rotation_killed_at_every_step_loses_nothing(tmp_path: Path) -> None:
    steps = rotation_steps()
    outcomes: dict[int, str] = {}
    for kill_at in range(1, len(steps) + 1):
        # built afresh each time: a copied installation would first rewrite the head
        # mirror (it names the database's path), which shifts the steps
        site = build_site(tmp_path / f"kill-{kill_at}")
        assert crash_rotation(site, kill_at), f"step {kill_at} {steps[kill_at - 1]} not reached"
        outcomes[kill_at] = expect_rotation_finished(site)
        stats.add("rotation_kills")
        stats.add("rotation_committed", outcomes[kill_at] == "rotated")
    # the commit falls between the staged key and the first step after it: every kill
    # before it leaves the old key in force, every kill after it finishes the rotation
    committed = [k for k, outcome in outcomes.items() if outcome == "rotated"]
    assert committed == list(range(committed[0], len(steps) + 1))
    assert steps[committed[0] - 2] == ("sync", "keys")  # the staged key made durable
