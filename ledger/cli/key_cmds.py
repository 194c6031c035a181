"""`moltis-ledger key ...`: the ledger key (where it is, rotation)."""

from __future__ import annotations

from pathlib import Path

import click

from ledger.cli.app import State, cli, common, pass_state, writes


@cli.group()
def key() -> None:
    """The ledger key that seals every secret (`key rotate`, `key where`).

    Example:

    \b
        moltis-ledger key where
        moltis-ledger key rotate --reason "yearly rotation"
    """


@key.command()
@common
@pass_state
def where(state: State) -> None:
    """Say where the ledger key is (a restore of this ledger's secrets needs it).

    Example:

    \b
        moltis-ledger key where
    """
    from ledger.ops.keys import key_file_problem, key_location

    keys = state.store().ledger.vault.keys
    problem = key_file_problem(keys)
    if state.json:
        state.out.json({"key": key_location(keys), "problem": problem})
        return
    state.out.line(f"ledger key: {key_location(keys)}")
    if problem:
        state.out.warn(problem)


@key.command()
@click.option("--new-key-file", type=click.Path(dir_okay=False), default=None,
              help="Write the new key here (needed when the key comes from "
                   "$MOLTIS_LEDGER_KEY); by default the key file is replaced.")
@click.option("--resume", is_flag=True,
              help="Finish a rotation that was stopped part-way (the re-sealing of "
                   "backups and the key move); a rotation that had not committed is "
                   "undone instead.")
@writes
@common
@pass_state
def rotate(state: State, new_key_file: str | None, resume: bool) -> None:
    """Re-seal every stored secret under a new random key, in one transaction.

    Appends a rotation event (who, when, why; no key material); the chain stays
    intact, shredded values stay destroyed, and the old key no longer opens anything.
    Fingerprints stay the same, so history still shows which values changed.

    Example:

    \b
        moltis-ledger key rotate --reason "yearly rotation"
        MOLTIS_LEDGER_KEY=... moltis-ledger key rotate --new-key-file ./new.key
        moltis-ledger key rotate --resume

    A rotation stopped part-way (killed, power loss) keeps the old key beside the new
    one (`ledger.key.new`) until `key rotate --resume` finishes it; nothing is lost.
    """
    from ledger.ops.keys import resume_rotation, rotate_key

    # --resume: no hand-edit import first, which would need to open secrets with the
    # key the stopped rotation already replaced in the database
    ledger = state.store(write=True, sync=not resume).ledger
    target = Path(new_key_file) if new_key_file else None
    if resume:
        finished = resume_rotation(ledger, new_key_file=target, data_dir=state.data_home)
        if finished is None:
            if state.json:
                state.out.json({"resumed": False, "key": ledger.vault.keys.describe()})
                return
            state.out.line("the stopped rotation had not committed: nothing was re-sealed, "
                           f"and the ledger key is still {ledger.vault.keys.describe()}")
            return
        done = finished
    else:
        done = rotate_key(ledger, new_key_file=target, actor=state.actor, reason=state.reason,
                          data_dir=state.data_home)
    if state.json:
        state.out.json({"seq": done.seq, "secrets": done.secrets, "key": done.key_location,
                        "installed": done.installed, "backups": done.backups,
                        "backups_failed": done.backups_failed,
                        "ledger_backups": done.ledger_backups})
        return
    resealed = "".join(
        [f", {done.backups} sealed backup file(s)" if done.backups else "",
         f", {done.ledger_backups} ledger backup(s)" if done.ledger_backups else ""])
    if resume:
        state.out.line(f"finished the key rotation (head seq {done.seq})"
                       + (f"; open with the new key: {resealed[2:]}" if resealed else ""))
    else:
        state.out.line(f"seq {done.seq}: re-sealed {done.secrets} secret value(s) under a new "
                       f"key{resealed}")
    if done.backups_failed:
        state.out.warn(f"{done.backups_failed} sealed backup file(s) could not be re-sealed "
                       "(damaged, or sealed with another key): they still need the key they "
                       "were sealed with; run with -v for their names")
    if done.installed:
        state.out.line(f"the new key is in {done.key_location} (0600); the old key opens "
                       "nothing in this ledger or in <data dir>/backups any more (backups "
                       "kept elsewhere still need it). Back the new key up: a restore of "
                       "this ledger needs it")
    else:
        state.out.warn(f"the new key is in {done.key_location}: install it now (for example "
                       "as MOLTIS_LEDGER_KEY); the old key opens nothing any more")
