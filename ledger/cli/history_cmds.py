"""`moltis-ledger` commands on history: log, diff, blame, rollback and export.

Attached to the `cli` group of `ledger.cli.app` when that module is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ledger.cli.app import (
    REF_HELP,
    CommandError,
    State,
    at_option,
    cli,
    common,
    doc_path,
    expected_seq_option,
    pass_state,
    writes,
)
from ledger.cli.render import when

ROLLBACK_ASK_ABOVE = 3  # a rollback removing more paths than this asks first

# ---------------------------------------------------------------------------------
# commands: history


@cli.command()
@click.option("--path", "path", default=None, help="Only events touching this path "
              "(keys:NAME for provider_keys.json).")
@click.option("--actor", "who", default=None, help="Only events by this actor.")
@click.option("--since", default=None, metavar="REF",
              help=f"Only events after REF ({REF_HELP}).")
@click.option("--until", default=None, metavar="REF", help="Only events up to REF.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="At most this many events, newest first (0: all).")
@common
@pass_state
def log(state: State, path: str | None, who: str | None, since: str | None,
        until: str | None, limit: int) -> None:
    """List events, newest first: seq, time, actor, reason, source and changes.

    Example:

    \b
        moltis-ledger log --limit 10
        moltis-ledger log --path server.port --actor alice
        moltis-ledger log --since 2026-11-24T00:00:00Z --json
        moltis-ledger log --path keys:openai
    """
    from ledger.engine.queries import iter_history
    from ledger.ops.display import event_json

    ledger = state.store().ledger
    doc, prefix = doc_path(path, allow_root=True) if path is not None else (None, None)
    events = [event_json(ev, ledger.vault) for ev in iter_history(
        ledger, path=prefix, actor=who, since=since, until=until, limit=limit or None,
        doc=doc)]
    head = ledger.head_state().seq
    if state.json:
        state.out.json({"head_seq": head, "events": events})
    elif events:
        state.out.events(events)
    else:
        state.out.line(f"no events match (head seq {head})")


def _diff_json(entries: Sequence[Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(e) for e in entries]


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("ref")
@click.argument("ref2", metavar="[REF]", required=False)
@click.option("--path", default=None, help="Only changes under this path.")
@common
@pass_state
def diff(state: State, ref: str, ref2: str | None, path: str | None) -> None:
    """Path-level changes from REF to a second REF (default: head), secrets masked.

    Green: added; red: removed; yellow: changed.

    Example:

    \b
        moltis-ledger diff 12
        moltis-ledger diff -3
        moltis-ledger diff 2026-11-24T09:00:00Z 40 --path tools
        moltis-ledger diff 1 --path keys:openai
    """
    from ledger.ops.history import diff_states

    ledger = state.store().ledger
    doc, prefix = doc_path(path, allow_root=True) if path else (None, ())
    # the changes since REF: a time to the second starts that second, as for
    # `log --since`, so both list the events `log` printed at that time
    a, b = state.seq(ref, lower_bound=True), state.seq(ref2)
    entries = diff_states(ledger.state_at(a), ledger.state_at(b), ledger.vault, prefix,
                          doc=doc)
    if state.json:
        state.out.json({"from": a, "to": b, "changes": _diff_json(entries)})
        return
    state.out.line(f"seq {a} -> seq {b}: {len(entries)} change(s)", "bold")
    state.out.diff(_diff_json(entries))


@cli.command()
@click.argument("path", required=False)
@at_option
@common
@pass_state
def blame(state: State, path: str | None, ref: str | None) -> None:
    """For each leaf path, the event that last set it (seq, actor, time, reason).

    Example:

    \b
        moltis-ledger blame
        moltis-ledger blame server
        moltis-ledger blame keys:openai --json
    """
    from ledger.cli.render import when
    from ledger.ops.history import blame as blame_state

    ledger = state.store().ledger
    seq = state.seq(ref)
    doc, prefix = doc_path(path, allow_root=True) if path else (None, ())
    entries = [e for e in blame_state(ledger, ledger.state_at(seq), prefix)
               if doc is None or e.doc == doc]
    if state.json:
        state.out.json({"seq": seq, "entries": [dataclasses.asdict(e) for e in entries]})
        return
    state.out.table(
        ("path", "seq", "time", "actor", "reason"),
        [(e.path if e.doc == "config" else f"keys:{e.path}", str(e.seq), when(e.time),
          e.actor, e.reason) for e in entries],
        title=f"as of seq {seq}")


@cli.command()
@click.option("--to", "ref", required=True, metavar="REF",
              help=f"The point to go back to: {REF_HELP}.")
@click.option("--dry-run", is_flag=True, help="Print the diff; append nothing.")
@click.option("--leave-destroyed-unset", is_flag=True,
              help="If REF held secrets shredded since, leave those keys unset.")
@click.option("--yes", is_flag=True,
              help=f"Do not ask before removing more than {ROLLBACK_ASK_ABOVE} paths "
                   "(for scripts).")
@expected_seq_option
@writes
@common
@pass_state
def rollback(state: State, ref: str, dry_run: bool, leave_destroyed_unset: bool, yes: bool,
             expected_seq: int | None) -> None:
    """Make the configuration equal its state at REF, with one new event.

    History is never rewritten: the compensating event (source `rollback`) names the
    target and records who rolled back and why.

    Example:

    \b
        moltis-ledger rollback --to 12 --dry-run
        moltis-ledger rollback --to -1 --reason "the port change broke the proxy"
        moltis-ledger rollback --to 2026-11-24T09:00:00Z --expected-seq 57
        moltis-ledger rollback --to "last tuesday" --dry-run
    """
    from ledger.ops.history import diff_states
    from ledger.ops.history import rollback as run_rollback

    ledger = state.store(write=not dry_run).ledger
    target = state.seq(ref)
    if target == 0 and ref.strip() != "0" and ledger.head_state().seq > 0:
        raise CommandError(f"REF {ref} names seq 0, the empty ledger: rolling back there "
                           "removes every key; say --to 0 if that is what you want")
    before = ledger.head_state()
    if not dry_run and not yes:
        _confirm_removals(state, run_rollback(ledger, target, dry_run=True,
                                              leave_destroyed_unset=leave_destroyed_unset),
                          target)
    result = run_rollback(ledger, target, dry_run=dry_run,
                          leave_destroyed_unset=leave_destroyed_unset, actor=state.actor,
                          reason=state.reason, expected_seq=expected_seq)
    commit = result.commit
    if dry_run or commit is None or not commit.appended:
        after = ledger.state_at(target)
    else:
        before, after = ledger.state_at(commit.seq - 1), ledger.state_at(commit.seq)
    entries = _diff_json(diff_states(before, after, ledger.vault))
    appended = commit is not None and commit.appended
    seq = commit.seq if commit is not None else before.seq
    if state.json:
        state.out.json({"target": target, "dry_run": dry_run, "appended": appended,
                        "seq": seq, "changes": entries, "left_unset": result.left_unset})
        return
    # Name the target event, so that a REF given as a time shows which state it picked.
    event = ledger.event(target) if target else None
    picked = (f"seq {target} ({when(event.time)} by {event.actor}: "
              f"{event.reason or 'no reason given'})" if event is not None
              else f"seq {target} (the empty ledger)")
    if dry_run:
        state.out.line(f"dry run: rolling back to {picked} would change "
                       f"{len(entries)} path(s)", "bold")
    elif appended:
        state.out.line(f"seq {seq}: rolled back to {picked}", "bold")
    else:
        state.out.line(f"the configuration already equals seq {target}; nothing appended")
    state.out.diff(entries)
    for path in result.left_unset:
        state.out.warn(f"{path} held a shredded secret at seq {target}; left unset")


def _confirm_removals(state: State, preview: Any, target: int) -> None:
    """More than a few paths removed: ask on a terminal, refuse elsewhere without --yes."""
    import sys

    from ledger.core.keypaths import format_path

    removed = [("keys:" if c.doc == "keys" else "") + format_path(c.path)
               for c in preview.changes if c.op == "unset"]
    if len(removed) <= ROLLBACK_ASK_ABOVE:
        return
    shown = ", ".join(removed[:8]) + (f", … ({len(removed)} in all)" if len(removed) > 8 else "")
    if sys.stdin is None or not sys.stdin.isatty():
        raise CommandError(f"rolling back to seq {target} removes {len(removed)} paths "
                           f"({shown}); check with --dry-run, then pass --yes")
    click.confirm(f"Rolling back to seq {target} removes {len(removed)} paths ({shown}). "
                  "Continue?", abort=True, err=True)


@cli.command()
@at_option
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), default="toml",
              show_default=True, help="moltis.toml or moltis.json.")
@click.option("--reveal-secrets", is_flag=True,
              help="Write secret values in clear (only with -o; files are mode 0600).")
@click.option("--masked", is_flag=True,
              help="With -o: write secrets as <secret fp:…> placeholders (a copy to read, "
                   "never a config Moltis can use; refused into a live config folder).")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write moltis.toml and provider_keys.json into this folder.")
@common
@pass_state
def export(state: State, ref: str | None, fmt: str, reveal_secrets: bool, masked: bool,
           out_dir: str | None) -> None:
    """Write the config files as of REF: the way back to the file backend.

    Without -o, prints the config file to stdout (secrets masked). With -o, writes
    moltis.toml (or moltis.json) and provider_keys.json, mode 0600. Secrets:
    --reveal-secrets writes their values (files Moltis can use, with `[config]
    backend = "file"`); --masked writes placeholders, which Moltis would send as
    keys, so a masked export is refused into a folder holding a live config, and -o
    without either flag is refused when there is a secret to write. The config folder
    in use is always refused (masked or revealed): `switch-backend file` is the way
    back to files there. A masked export
    migrates back to the same masked view. `switch-backend file` is the one-step way
    back to files, proven equal.

    Example:

    \b
        moltis-ledger export --at 12 > moltis.toml.at-12
        moltis-ledger export -o /tmp/config-at-12 --at 12 --masked
        moltis-ledger export -o /srv/moltis-restore --reveal-secrets
    """
    import json

    from ledger.ops.export import (
        export_documents,
        holds_secrets,
        is_config_home,
        live_config_in,
        write_export,
    )

    if reveal_secrets and out_dir is None:
        raise click.UsageError("--reveal-secrets needs -o DIR: secret values are only written "
                               "to files (mode 0600), never printed")
    if reveal_secrets and masked:
        raise click.UsageError("--reveal-secrets and --masked exclude each other")
    if out_dir is not None and is_config_home(Path(out_dir), state.config_home):
        # masked placeholders there would reach providers as keys; revealed files would
        # switch the gateway to files without the proof and sealed backup of a switch
        raise CommandError(
            f"{out_dir} is a live config (the config folder in use): export never writes "
            "there. Export into another folder, or use `moltis-ledger switch-backend file` "
            "to move the gateway back to files")
    ledger = state.store().ledger
    seq = state.seq(ref)
    as_json = fmt == "json" or (state.json and out_dir is None)
    if out_dir is not None and not reveal_secrets:
        target = Path(out_dir)
        if not masked and holds_secrets(ledger, seq):
            raise CommandError(
                f"seq {seq} holds secrets: pass --reveal-secrets to write their values (a "
                "config Moltis can use), or --masked for placeholders (a copy to read, not "
                "to run); `moltis-ledger switch-backend file` moves the gateway back to files")
        live = live_config_in(target, state.config_home)
        if live is not None and holds_secrets(ledger, seq):
            raise CommandError(
                f"{live} is a live config: masked placeholders there would be sent to "
                "providers as keys. Export into another folder, or use --reveal-secrets "
                "(or `moltis-ledger switch-backend file`)")
    files = export_documents(ledger, seq, fmt="json" if as_json else "toml",
                             reveal=reveal_secrets, file_backend=reveal_secrets)
    if out_dir is None:
        if state.json:  # both documents, masked, in one JSON document
            state.out.json({"seq": seq, "config": json.loads(files.config_text),
                            "provider_keys": json.loads(files.keys_text)})
        else:
            state.out.text(files.config_text)
        return
    written = write_export(files, Path(out_dir))
    if state.json:
        state.out.json({"seq": seq, "files": [str(p) for p in written],
                        "revealed": reveal_secrets})
        return
    state.out.line(f"exported seq {seq}: " + ", ".join(str(p) for p in written)
                   + " (mode 0600)")
    if reveal_secrets:
        from ledger.ops.keys import key_location

        state.out.warn("these files hold secret values in clear; keep them private")
        state.out.note(f"the ledger's own copies stay sealed with the ledger key from "
                       f"{key_location(ledger.vault.keys)}; a restore of the ledger needs "
                       "that key, these files do not")
    elif masked:
        state.out.note("secrets are masked placeholders: not a config Moltis can run with")
