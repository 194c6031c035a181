"""`moltis-ledger` commands for integrity, transfer and credentials: verify, sign-head,
bundles, backup/restore, watch, shred, checkpoint, rebuild-snapshots and providers (plus
`demo`).

Attached to the `cli` group of `ledger.cli.app` when that module is imported. This module
is long because each command is a thin click wrapper whose docstring is its --help
text, and splitting them further would only scatter the admin surface.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import click

from ledger.cli.app import (
    AT_HELP,
    EXIT_VERIFY,
    REF_HELP,
    CommandError,
    State,
    cli,
    common,
    expect_head_option,
    expected_seq_option,
    pass_state,
    read_value,
    render_commit,
    run_async,
    text_io,
    verify_report_json,
    writes,
)
from ledger.core.chain import VerifyReport
from ledger.errors import LedgerError
from ledger.files.safe_io import read_regular

# ---------------------------------------------------------------------------------
# verification


def _report(state: State, report: VerifyReport, what: str) -> None:
    """Print a verification report; exit 3 (after the output) when it failed."""
    if state.json:
        state.out.json(verify_report_json(report))
    elif report.ok:
        state.out.line(f"ok: {what} verifies: {report.events} event(s), head seq "
                       f"{report.head_seq}", "green")
        state.out.line(f"head hash: {report.head_hex}")
        if report.key_fingerprint:
            vouched = [f"signed head: seq {report.signed_seq}"] if report.signed_seq else []
            if report.mac_seq and report.mac_seq != report.signed_seq:
                vouched.append(f"head MAC: seq {report.mac_seq}")
            signed = f" ({'; '.join(vouched)})" if vouched else ""
            state.out.line(f"signing key: {report.key_fingerprint}{signed}")
        for note in report.notes:
            state.out.note(note)
    if not report.ok:
        raise CommandError(f"verification failed at seq {report.first_bad_seq}: {report.problem}",
                           EXIT_VERIFY)


def _pinned_key(expect_key: str | None, key_file: str | None) -> str | None:
    from ledger.engine.integrity_keys import parse_fingerprint

    if expect_key is not None and key_file is not None:
        raise CommandError("give --expect-key or --pinned-key-file, not both")
    text, where = expect_key, "--expect-key"
    if key_file is not None:
        try:
            # a regular file only, bounded (a FIFO or device is refused, not waited on)
            data = read_regular(Path(key_file), 4096, what="pinned key file")
            text, where = data.decode("ascii"), key_file
        except (OSError, UnicodeDecodeError) as err:
            raise CommandError(f"{key_file}: cannot read the pinned key: {err}") from None
    if text is None:
        return None
    try:
        return parse_fingerprint(text)
    except ValueError as err:
        raise CommandError(f"{where}: {err}") from None


@cli.command()
@expect_head_option
@click.option("--expect-key", metavar="FPR", default=None,
              help="The signing key's fingerprint (as verify prints it) the head must be "
                   "signed with: also catch a rewritten, re-chained or truncated log.")
@click.option("--pinned-key-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A file holding that fingerprint or the public key (64 hex digits).")
@common
@pass_state
def verify(state: State, expect_head: bytes | None, expect_key: str | None,
           pinned_key_file: str | None) -> None:
    """Check the ledger: the hash chain, the rows, every snapshot, the head and the
    secrets table against a replay of the log, and the signed head.

    Exits 3 naming the first bad place. Prints the head hash and the fingerprint of
    the key that signed the head: pin that fingerprint once (--expect-key) and a log
    rewritten by someone without the ledger key fails, truncation included. Without
    a pin, a cut-off tail cannot be noticed unless --expect-head gives a head
    recorded earlier.

    Example:

    \b
        moltis-ledger verify
        moltis-ledger verify --expect-key ed25519:3f9a…c2
        moltis-ledger verify --expect-head 5f0c…e1 --json
    """
    pinned = _pinned_key(expect_key, pinned_key_file)
    state.accept_older_head = True  # the audit checks the head mark, in its report
    ledger = state.store().ledger
    total = ledger.backend.head().seq
    report = ledger.verify(expect_head, pinned) if total == 0 else _tracked_verify(
        state, ledger, expect_head, pinned, total)
    _report(state, report, "the ledger")


@cli.command(name="sign-head")
@click.option("--adopt", is_flag=True,
              help="Vouch for a head nobody vouched for (a ledger written before signing, "
                   "or whose signature was removed or made with another key), after the "
                   "full verify passes.")
@common
@pass_state
def sign_head(state: State, adopt: bool) -> None:
    """Sign the head now with the ledger key (a checkpoint: `verify --expect-key` then
    vouches for every event up to it, without the ledger key).

    Writers sign by themselves at checkpoints and MAC every head, but never over a head
    that nothing vouches for: a ledger written before signing, or one whose signature
    was removed, stays unsigned (writes warn, verify and check say "the head is not
    signed") until an operator checks it and adopts it with --adopt, which runs the
    full verify first and signs only if it passes (exit 3 otherwise). Needs the ledger
    key.

    Example:

    \b
        moltis-ledger sign-head
        moltis-ledger verify && moltis-ledger sign-head --adopt
    """
    from ledger.errors import SecretKeyError

    # the operator accepts this head, also one older than the head mark (a restore)
    state.accept_older_head = adopt
    ledger = state.store(write=True).ledger
    if ledger.vault.integrity() is None:
        raise SecretKeyError(f"sign-head needs the ledger key ({ledger.vault.keys.describe()}): "
                             "the signing key is derived from it; nothing was signed")
    if adopt:
        total = ledger.backend.head().seq
        report = ledger.verify(adopting=True) if total == 0 else _tracked_verify(
            state, ledger, None, None, total, adopting=True)
        if not report.ok:
            raise CommandError(f"not signing: verification failed at seq "
                               f"{report.first_bad_seq}: {report.problem}", EXIT_VERIFY)
        signed = ledger.sign_head(adopt=True, expect_hash=report.head_hash)
    else:
        signed = ledger.sign_head()
    head = ledger.backend.head()
    fpr = ledger.vault.integrity()
    doc = {"signed": signed, "head_seq": head.seq, "head_hash": head.hash.hex(),
           "key_fingerprint": fpr.fingerprint if fpr is not None else None}
    if state.json:
        state.out.json(doc)
    elif signed:
        state.out.line(f"ok: signed the head, seq {head.seq}", "green")
        state.out.line(f"signing key: {doc['key_fingerprint']}")
    else:
        state.out.line("nothing to sign: the ledger is empty")


def _tracked_verify(state: State, ledger: Any, expect_head: bytes | None, pinned: str | None,
                    total: int, *, adopting: bool = False) -> VerifyReport:
    from ledger.engine.audit import audit

    return audit(ledger, expect_head, pinned,
                 track=lambda records: state.out.track(records, "verifying", total),
                 adopting=adopting)


@cli.command(name="verify-bundle")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@expect_head_option
@common
@pass_state
def verify_bundle(state: State, file: str, expect_head: bytes | None) -> None:
    """Verify a bundle file's chain, with no database at all.

    Example:

    \b
        moltis-ledger verify-bundle ledger.bundle --expect-head 5f0c…e1
    """
    from ledger.ops.bundle import verify_bundle as check_bundle

    with state.out.progress("verifying the bundle"):
        report = check_bundle(Path(file), expect_head)
    _report(state, report, file)


# ---------------------------------------------------------------------------------
# bundles, backup and restore


class _CountingWriter:
    """Counts the lines written (one per event) for the progress bar."""

    def __init__(self, target: Any, advance: Callable[[int], None]) -> None:
        self._target, self._advance = target, advance

    def write(self, text: str) -> int:
        self._advance(text.count("\n"))
        return int(self._target.write(text))


def _write_bundle(ledger: Any, f: IO[str], advance: Callable[[int], None],
                  with_secrets: bool) -> Any:
    """`write_bundle` into `f`, written again from the start when the ledger moved under
    it (a restore forked it: StateMovedError); the head the file holds, not the live
    head read again after it."""
    from ledger.errors import StateMovedError
    from ledger.ops.bundle import write_bundle
    from ledger.ops.live_state import READ_TRIES

    for attempt in range(1, READ_TRIES + 1):
        try:
            return write_bundle(ledger, text_io(_CountingWriter(f, advance)),
                                with_secrets=with_secrets)
        except StateMovedError:
            if attempt == READ_TRIES:
                raise
            f.seek(0)
            f.truncate()
    raise AssertionError("unreachable")


@cli.command()
@click.option("-o", "--output", "target", type=click.Path(dir_okay=False), required=True,
              help="The bundle file to write (mode 0600).")
@click.option("--with-secrets", is_flag=True,
              help="Include the sealed secret values (still encrypted with the ledger key).")
@common
@pass_state
def bundle(state: State, target: str, with_secrets: bool) -> None:
    """Write the whole log as a portable, verifiable file (JSON lines with hashes).

    Another ledger loads it with import-bundle; anyone can check it with
    verify-bundle, without a database.

    Example:

    \b
        moltis-ledger bundle -o ledger.bundle
        moltis-ledger bundle -o full.bundle --with-secrets
    """
    from ledger.files.safe_io import create_private, refuse_special
    from ledger.ops.bundle import replaceable_by_bundle

    path = Path(target)
    refuse_special(path, "the bundle")  # a FIFO or device there is never replaced
    if not replaceable_by_bundle(path):
        raise CommandError(f"{path} exists and is not a bundle: `bundle -o` replaces only an "
                           "earlier bundle (this could be the ledger, its key or a config "
                           "file); choose another file, or remove it first", 1)
    ledger = state.store().ledger
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # 0600 from the first byte, never through a link, in a checked directory; the
    # rename below replaces a link at `path` rather than following it
    fd = create_private(tmp)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f, state.out.progress(
                "writing the bundle", ledger.backend.head().seq + 1) as advance:
            head = _write_bundle(ledger, f, advance, with_secrets)
            f.flush()
            os.fsync(f.fileno())
        refuse_special(path, "the bundle")
        tmp.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if state.json:
        state.out.json({"file": str(path), "events": head.seq, "head_seq": head.seq,
                        "head_hash": head.hash.hex(), "with_secrets": with_secrets})
        return
    state.out.line(f"wrote {path}: {head.seq} event(s), head seq {head.seq}")
    state.out.line(f"head hash: {head.hash.hex()}")


@cli.command(name="import-bundle")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@common
@pass_state
def import_bundle(state: State, file: str) -> None:
    """Load a bundle into an empty ledger, after verifying its chain (exit 3 if not).

    Example:

    \b
        moltis-ledger --db /srv/new/moltis.db import-bundle ledger.bundle
    """
    from ledger.ops.bundle import check_bundle
    from ledger.ops.bundle import import_bundle as load_bundle

    with state.out.progress("importing the bundle"):
        # before the target is opened (which creates it): a refused bundle leaves no file
        checked = check_bundle(Path(file), state.keys())
        report = load_bundle(checked, state.store(write=True).ledger)
    _report(state, report, "the imported ledger")


def _key_note(state: State, ledger: Any) -> None:
    """Where the ledger key is: a backup's secrets (and its signed head) need it."""
    state.out.note(f"the ledger key is {ledger.vault.keys.describe()}: keep it with the "
                   "backup; restoring needs it to open the secrets")


@cli.command()
@click.option("-o", "--output", "target", type=click.Path(dir_okay=False), default=None,
              help="A new SQLite file for the copy (default: <data dir>/backups/"
                   "ledger-<time>.db).")
@common
@pass_state
def backup(state: State, target: str | None) -> None:
    """A consistent online copy of the ledger (while writers run), verified.

    One self-contained SQLite file (mode 0600), whatever the ledger's backend.

    Example:

    \b
        moltis-ledger backup
        moltis-ledger backup -o /backups/moltis-ledger-$(date +%F).db
    """
    from ledger.ops.backup import backup as copy_ledger
    from ledger.ops.backup import default_backup_path

    ledger = state.store().ledger
    path = Path(target) if target is not None else default_backup_path(state.data_home)
    with state.out.progress("backing up"):
        report = copy_ledger(ledger, path)
    if state.json:
        state.out.json({"file": str(path), **verify_report_json(report),
                        "ledger_key": ledger.vault.keys.describe()})
    else:
        state.out.line(f"wrote {path}: {report.events} event(s), head seq "
                       f"{report.head_seq}")
        state.out.line(f"head hash: {report.head_hex}")
        _key_note(state, ledger)
    if not report.ok:
        raise CommandError(f"the copy does not verify at seq {report.first_bad_seq}: "
                           f"{report.problem}", EXIT_VERIFY)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True,
              help="Restore even if that drops events the backup does not have.")
@common
@pass_state
def restore(state: State, file: str, force: bool) -> None:
    """Replace the ledger with a backup, after verifying the backup's chain.

    A backup that does not verify is refused (exit 3). Refused too, unless --force,
    when the backup is not a continuation of this ledger's history. The ledger is
    rebuilt from the backup's events (never its file's other contents), and the
    replaced one is kept in <data dir>/backups/.

    Example:

    \b
        moltis-ledger restore /backups/moltis-ledger-2026-11-24.db
    """
    from ledger.ops.backup import restore as restore_ledger

    source = Path(file)
    if not source.is_file():
        raise CommandError(f"{source}: no such file" if not source.exists() else
                           f"{source}: not a regular file; name the backup file itself")
    # the repair that a refused head (head mark, head MAC, a changed key check) names:
    # the head being replaced must not stop it; the backup is verified instead
    state.accept_older_head = True
    ledger = state.store(write=True).ledger
    with state.out.progress("restoring"):
        result = restore_ledger(ledger, source, force=force, data_dir=state.data_home)
    if not state.json:
        if result.kept is not None:
            state.out.line(f"kept the replaced ledger in {result.kept}")
        _key_note(state, ledger)
    _report(state, result.report, "the restored ledger")


# ---------------------------------------------------------------------------------
# watch


@cli.command()
@click.option("--after", type=click.IntRange(min=0), default=None,
              help="Start after this seq (default: the head, i.e. only new events).")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Stop after this many events.")
@click.option("--interval", type=click.FloatRange(min=0.01), default=0.2, show_default=True,
              help="Seconds between checks for new events.")
@common
@pass_state
def watch(state: State, after: int | None, count: int | None, interval: float) -> None:
    """Follow new events as other processes append them (Ctrl-C to stop).

    With --json, one JSON object per line (per event).

    Example:

    \b
        moltis-ledger watch
        moltis-ledger watch --after 40 --count 1 --json
    """
    from ledger.ops.display import event_json

    store = state.store()
    vault = store.ledger.vault
    if store.ledger.backend.read_only:  # hand edits of moltis.toml become events here too
        store.file_sync = state.hand_edit_poller(store)

    async def follow() -> None:
        seen = 0
        events = store.watch(poll_interval=interval, after=after)
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for ev in events:
                doc = event_json(ev, vault)
                if state.json:
                    state.out.json_line(doc)
                else:
                    state.out.event_line(doc)
                seen += 1
                if count is not None and seen >= count:
                    return

    if not state.json:
        state.out.note("watching for new events (Ctrl-C to stop)")
    run_async(follow())


# ---------------------------------------------------------------------------------
# secrets and snapshots


@cli.command()
@click.option("--path", "path", default=None,
              help="The secret at this path (keys:NAME.apiKey for provider_keys.json).")
@click.option("--at", "ref", metavar="REF", default=None,
              help=f"With --path: the value the path held at REF ({REF_HELP}; default: "
                   "head).")
@click.option("--fingerprint", "fp", default=None,
              help="Every stored value with this fingerprint (from a <secret fp:…> mask).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@writes
@common
@pass_state
def shred(state: State, path: str | None, ref: str | None, fp: str | None,
          yes: bool) -> None:
    """Destroy a stored secret value ("forget this key"); cannot be undone.

    History keeps that the key was set, by whom and when, and still verifies; reading
    a point that held the value shows it as destroyed.

    Example:

    \b
        moltis-ledger shred --path providers.openai.api_key --reason "leaked"
        moltis-ledger shred --path keys:openai.apiKey --at 12 --yes
        moltis-ledger shred --fingerprint 6719f34e7b0885e7 --yes
    """
    from ledger.cli.app import doc_path
    from ledger.core.document import get_value
    from ledger.core.secret_refs import refs_in

    if (path is None) == (fp is None):
        raise click.UsageError("give exactly one of --path or --fingerprint")
    if ref is not None and path is None:
        raise click.UsageError("--at goes with --path")
    ledger = state.store(write=True).ledger
    if path is not None:
        doc, key = doc_path(path)
        seq = state.seq(ref)
        value = get_value(ledger.state_at(seq).document(doc), key)
        # a secret leaf, or a list whose sealed elements are all destroyed
        refs = list(dict.fromkeys(refs_in(value)))
        if not refs:
            raise CommandError(f"{path} does not hold a stored secret at seq {seq}")
        label = path
    else:
        assert fp is not None
        fp = fp.removeprefix("fp:")
        refs = ledger.refs_with_fingerprint(fp)
        if not refs:
            raise CommandError(f"no stored secret has the fingerprint {fp}")
        label = f"fingerprint {fp}"
    if not yes:
        click.confirm(f"Destroy {len(refs)} stored secret value(s) ({label})? This cannot be "
                      "undone", abort=True, err=True)
    values = _open_values(ledger, refs)  # read before they are destroyed
    commit = ledger.shred(refs, paths=[path] if path else [], actor=state.actor,
                          reason=state.reason, source="cli")
    scrubbed = _scrub_backups(state, ledger, values)
    if state.json:
        state.out.json({"appended": commit.appended, "seq": commit.seq,
                        "secrets": [r.mask() for r in refs],
                        "backups_scrubbed": [str(p) for p in scrubbed]})
    elif commit.appended:
        state.out.line(f"seq {commit.seq}: destroyed {len(refs)} secret value(s) ({label})")
    else:
        state.out.line(f"already destroyed ({label}); nothing appended")
    for removed in scrubbed if not state.json else []:
        state.out.note(f"removed {removed}: a migration backup held the value")
    if commit.warning:
        state.out.warn(commit.warning)


def _open_values(ledger: Any, refs: Any) -> list[str]:
    """The plaintext values about to be shredded (those that still open)."""
    values = []
    for ref in refs:
        try:
            values.append(ledger.vault.open_secret(ref))
        except LedgerError:
            continue  # already destroyed, or no key: nothing to look for
    return values


def _scrub_backups(state: State, ledger: Any, values: list[str]) -> list[Path]:
    """The sealed migration backups made with this key would give a shredded value
    back (`unseal-backup`): the files holding it are removed from them."""
    # lazy: loaded only on this path (CLI start-up)
    from ledger.ops.backup_scrub import scrub_backups

    key = ledger.vault.keys.load(create=False)
    if key is None or not values:
        return []
    return scrub_backups(state.data_home, key, values)


@cli.command()
@common
@pass_state
def checkpoint(state: State) -> None:
    """Make destroyed secret values leave the disk now (SQLite: fold and truncate the
    write-ahead log; PostgreSQL: vacuum the secrets table). `shred` does this itself;
    run it when shred warned that it could not (another process was reading).

    Example:

    \b
        moltis-ledger checkpoint
    """
    ledger = state.store(write=True).ledger
    ledger.backend.checkpoint()
    if state.json:
        state.out.json({"ok": True})
    else:
        state.out.line("ok: checkpoint done")


@cli.command(name="rebuild-snapshots")
@common
@pass_state
def rebuild_snapshots(state: State) -> None:
    """Drop and rewrite the projection snapshots from the log (derived data).

    Example:

    \b
        moltis-ledger rebuild-snapshots
    """
    ledger = state.store(write=True).ledger
    with state.out.progress("rebuilding snapshots"):
        count = ledger.rebuild_snapshots()
    if state.json:
        state.out.json({"snapshots": count, "head_seq": ledger.head_state().seq})
    else:
        state.out.line(f"rebuilt {count} snapshot(s) up to seq {ledger.head_state().seq}")


# ---------------------------------------------------------------------------------
# providers


def _mask(secret: Any) -> str | None:
    from ledger.core.secret_refs import mask_text

    if secret is None:
        return None
    return mask_text(secret.fingerprint, destroyed=secret.is_destroyed)


@cli.group()
def providers() -> None:
    """Provider credentials: the key store that provider_keys.json held.

    Example:

    \b
        moltis-ledger providers list
        moltis-ledger providers set openai --api-key - --models gpt-5,gpt-4o
        moltis-ledger providers effective --json
    """


@providers.command(name="list")
@click.option("--at", "ref", metavar="REF", default=None, help=AT_HELP)
@common
@pass_state
def providers_list(state: State, ref: str | None) -> None:
    """List the key store's entries, API keys masked.

    Example:

    \b
        moltis-ledger providers list
        moltis-ledger providers list --at -2 --json
    """
    from ledger.stores.providers import describe_entry

    store = state.store()
    entries = run_async(store.providers.list() if ref is None
                        else store.providers.list_at(state.seq(ref)))
    docs = {name: describe_entry(e) for name, e in entries.items()}
    if state.json:
        state.out.json(docs)
        return
    state.out.table(("name", "apiKey", "baseUrl", "models", "displayName"),
                    no_wrap=("name", "apiKey"), rows=[(n, d.get("apiKey", ""), d.get("baseUrl", ""),
                      ", ".join(d.get("models", [])), d.get("displayName", ""))
                     for n, d in docs.items()])


@providers.command(name="get")
@click.argument("name")
@common
@pass_state
def providers_get(state: State, name: str) -> None:
    """Show one key-store entry (exit 1 if there is none).

    Example:

    \b
        moltis-ledger providers get anthropic
    """
    from ledger.cli.render import json_text
    from ledger.stores.providers import describe_entry

    entry = run_async(state.store().providers.get(name))
    if entry is None:
        raise CommandError(f"no provider {name!r} in the key store")
    doc = describe_entry(entry)
    if state.json:
        state.out.json(doc)
    else:
        state.out.text(json_text(doc))


@providers.command(name="set")
@click.argument("name")
@click.option("--api-key", default=None, metavar="KEY|-",
              help="The API key; - to type it at a hidden prompt (or pipe it).")
@click.option("--base-url", default=None, help="The endpoint URL.")
@click.option("--models", default=None, help="Comma-separated model names.")
@click.option("--display-name", default=None, help="A label for the UI.")
@click.option("--no-enable", is_flag=True,
              help="Do not mark [providers.NAME] enabled in the config.")
@expected_seq_option
@writes
@common
@pass_state
def providers_set(state: State, name: str, api_key: str | None, base_url: str | None,
                  models: str | None, display_name: str | None, no_enable: bool,
                  expected_seq: int | None) -> None:
    """Create or change one entry; fields not given are kept (one event).

    Saving a key also marks the provider enabled in the config, as Moltis does, in
    the same event.

    Example:

    \b
        moltis-ledger providers set openai --api-key -
        echo "$ANTHROPIC_KEY" | moltis-ledger providers set anthropic --api-key -
        moltis-ledger providers set custom-local --base-url http://127.0.0.1:8000/v1
    """
    from ledger.stores.contract import UNSET
    from ledger.typed.suggest import did_you_mean, suggest_providers

    near = suggest_providers(name)
    if near:
        state.out.warn(f"{name!r}: unknown provider name (not a known one, custom-<slug>, "
                       f"voice-* or phone_*){did_you_mean(near)}; it is stored, and "
                       "Moltis ignores an entry it has no provider for")
    kw: dict[str, Any] = {"api_key": UNSET, "base_url": UNSET, "models": UNSET,
                          "display_name": UNSET}
    if api_key is not None:
        kw["api_key"] = read_value(f"{name} API key", hidden=True) if api_key == "-" else api_key
        if api_key != "-" and not state.json:
            state.out.note("tip: --api-key - reads the key at a hidden prompt, so it stays "
                           "out of your shell history")
    if base_url is not None:
        kw["base_url"] = read_value(f"{name} base URL", hidden=True) if base_url == "-" else (
            base_url)
    if models is not None:
        kw["models"] = [m.strip() for m in models.split(",") if m.strip()]
    if display_name is not None:
        kw["display_name"] = display_name
    store = state.store(write=True)
    commit = run_async(store.providers.set(name, enable=not no_enable,
                                           **kw, **state.write_kw(expected_seq)))
    render_commit(state, commit, nothing=f"{name} already has these values")


@providers.command(name="remove")
@click.argument("name")
@expected_seq_option
@writes
@common
@pass_state
def providers_remove(state: State, name: str, expected_seq: int | None) -> None:
    """Remove one entry from the key store.

    Example:

    \b
        moltis-ledger providers remove custom-old --reason "contract ended"
    """
    store = state.store(write=True)
    commit = run_async(store.providers.remove(name, **state.write_kw(expected_seq)))
    render_commit(state, commit, nothing=f"no provider {name!r} in the key store")


@providers.command(name="effective")
@common
@pass_state
def providers_effective(state: State) -> None:
    """What the gateway uses per provider: config, key store and environment merged,
    with the source of each field.

    Example:

    \b
        moltis-ledger providers effective
        OPENAI_API_KEY=… moltis-ledger providers effective --json
    """
    from ledger.ops.display import shown_text

    store = state.store()
    found = run_async(store.providers.effective())
    docs = {name: {"enabled": p.enabled, "api_key": _mask(p.api_key),
                   "base_url": shown_text(p.base_url, store.ledger.vault),
                   "models": list(p.models), "display_name": p.display_name,
                   "sources": dict(p.sources)} for name, p in found.items()}
    if state.json:
        state.out.json(docs)
        return
    rows = [(n, "yes" if d["enabled"] else "no", d["api_key"] or "",
             d["sources"].get("api_key", ""), d["base_url"] or "", ", ".join(d["models"]))
            for n, d in docs.items()]
    state.out.table(("name", "enabled", "api_key", "key from", "base_url", "models"), rows,
                    no_wrap=("name", "api_key"))


# ---------------------------------------------------------------------------------
# demo


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Work in this folder and keep it (default: a temporary one, removed).")
def demo(directory: str | None) -> None:
    """A guided tour on sample files: migrate, set, log, diff, blame, rollback, show,
    export, verify and providers, printing each command before its output.

    Touches nothing of your own configuration: it works in a temporary folder.

    Example:

    \b
        moltis-ledger demo
        moltis-ledger demo --dir /tmp/ledger-tour     # keep the files afterwards
    """
    from ledger.cli.demo import run_demo

    code = run_demo(Path(directory) if directory else None)
    sys.stdout.flush()
    if code:
        raise click.exceptions.Exit(code)
