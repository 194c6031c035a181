"""`moltis-ledger` commands that move the configuration between stores: migrate (the
files into the ledger, then the gateway switched to it), switch-backend (either way,
proven equal) and unseal-backup (read a sealed migration backup with the key).

Attached to the `cli` group of `ledger.cli.app` when that module is imported.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import click

from ledger.cli.app import (
    CommandError,
    State,
    cli,
    common,
    pass_state,
    writes,
)
from ledger.errors import LedgerError
from ledger.files import dirs


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show what would be imported; write nothing.")
@click.option("--no-switch", is_flag=True,
              help="Leave [config] backend as it is (the gateway keeps its current store).")
@click.option("--keep-files", is_flag=True,
              help="Keep the plaintext provider_keys.json and the secret values in the "
                   "config file after the import (by default the key file is retired into "
                   "the sealed backup and each secret in the config file is replaced by "
                   "its mask).")
@click.option("--from-backup", "from_backup", type=click.Path(file_okay=False, exists=True),
              default=None, help="First put back the files of this migration backup "
                                 "(opened with the ledger key), then import them.")
@writes
@common
@pass_state
def migrate(state: State, dry_run: bool, no_switch: bool, keep_files: bool,
            from_backup: str | None) -> None:
    """Import moltis.toml and provider_keys.json into the ledger, after a backup, and
    switch the gateway to the ledger.

    The files are first backed up into <data dir>/backups/migrate-<time>/ (files that
    hold secrets sealed with the ledger key, never copied in clear; see
    `unseal-backup`), then imported as one event (source `import`). Then `[config]
    backend` in moltis.toml is set to this ledger (comments kept; --no-switch to
    opt out), so the gateway's open_store() reads what the CLI reads, and the
    plaintext provider_keys.json is retired into the sealed backup and each secret
    value in the config file is replaced by its mask `<secret fp:…>` (the original is
    in the sealed backup; --keep-files keeps both as they are). Running it again
    appends nothing if the files are unchanged; after a
    hand edit it imports only what changed in the file, and never reverts values set
    in the ledger since.

    Example:

    \b
        moltis-ledger migrate --dry-run
        moltis-ledger migrate --reason "move the config to the ledger"
        moltis-ledger migrate --no-switch --keep-files
        moltis-ledger migrate --from-backup ~/.moltis/backups/migrate-20261126T162642.053797Z
    """
    from ledger.ops.migrate import key_vault_notices
    from ledger.ops.migrate import migrate as run_migrate

    if from_backup is not None:
        if dry_run:
            raise click.UsageError("--from-backup writes the files back: it cannot be a dry run")
        _restore_backup_files(state, Path(from_backup))
    config_file, keys_file = state.config_file, state.keys_file
    if not config_file.exists() and not keys_file.exists() and not key_vault_notices(keys_file):
        raise CommandError(f"nothing to migrate: neither {config_file} nor {keys_file} exists "
                           "(point --config-dir or MOLTIS_CONFIG_DIR at Moltis's config folder)")
    if state.installation.parse_error is not None:
        raise state.installation.parse_error
    backend, location = state.location()
    created = backend == "sqlite" and not Path(location).exists()
    if dry_run and created:
        from ledger.engine.vault import KeySource
        from ledger.stores.ledger_store import MemoryConfigStore

        ledger = MemoryConfigStore(keys=KeySource(
            key_file=dirs.default_key_file(state.config_home), env=os.environ)).ledger
    else:
        ledger = state.store(write=not dry_run, sync=False).ledger
    try:
        report = run_migrate(ledger, config_file=config_file, keys_file=keys_file,
                             data_dir=state.data_home, dry_run=dry_run, actor=state.actor,
                             reason=state.reason,
                             documents={"config": state.installation.doc},
                             config_data=state.installation.data)
    except BaseException:
        if created and not dry_run and state._store is not None:
            from ledger.ops.open_store import discard_if_empty

            discard_if_empty(state._store, location)  # no empty moltis.db after a failure
            state._store = None
        raise
    switched = retired = stripped = None
    if not dry_run:
        switched = _switch_after_migrate(state, ledger, backend, location, no_switch)
        if not keep_files and switched is not None:
            # a file whose record was damaged was recorded, not imported: the ledger may
            # lack what it holds, so it stays as it is (MigrationReport.unsure)
            if str(keys_file) not in report.unsure:
                retired = _retire_keys_file(state, ledger, report.backup_dir)
            if str(config_file) not in report.unsure:
                stripped = _strip_config_file(state, ledger, report.backup_dir)
    _render_migration(state, report, ledger, dry_run=dry_run, no_switch=no_switch,
                      switched=switched, retired=retired, backend=backend, stripped=stripped)


def _render_migration(state: State, report: Any, ledger: Any, *, dry_run: bool,
                      no_switch: bool, switched: str | None, retired: Path | None,
                      backend: str, stripped: Any = None) -> None:
    from ledger.ops.display import display_change

    keys_file = state.keys_file
    changes = [display_change(c, ledger.vault) for c in report.changes]
    seq = report.commit.seq if report.commit else ledger.head_state().seq
    gateway = _gateway_text(state)
    if state.json:
        state.out.json({"dry_run": dry_run, "appended": report.appended, "seq": seq,
                        "backup_dir": str(report.backup_dir) if report.backup_dir else None,
                        "sources": report.sources, "changes": changes,
                        "gateway": gateway, "switched": switched is not None,
                        "retired": str(retired) if retired else None,
                        "stripped": stripped.paths if stripped else [],
                        "key": ledger.vault.keys.describe(), "notices": report.notices})
        return
    out = state.out
    for notice in report.notices:  # Moltis's encrypted key vault, which is not read
        out.warn(notice)
    sources = ", ".join(report.sources.values()) or "(no files)"
    if report.backup_dir is not None:
        out.line(f"backup: {report.backup_dir} (files holding secrets sealed with the ledger "
                 "key; manifest.json lists them)")
        out.line(f"ledger key: {ledger.vault.keys.describe()}: restoring that backup needs "
                 "it, keep a copy somewhere else")
    if dry_run:
        out.line(f"dry run: would import {len(changes)} change(s) from {sources}; nothing "
                 "written, no backup made", "bold")
    elif report.appended:
        out.line(f"seq {seq}: imported {len(changes)} change(s) from {sources}", "bold")
    elif report.unsure:  # recorded, not compared: see the notice below
        out.line(f"nothing imported from {sources} (head seq {seq})")
    else:
        out.line(f"nothing to import: the ledger already has every value of {sources} "
                 f"(head seq {seq})")
    limit = 20 if not state.verbose else len(changes)
    out.changes(changes[:limit])
    if len(changes) > limit:
        out.line(f"  … {len(changes) - limit} more (`moltis-ledger log --limit 1 --json` "
                 "lists them all)", "dim")
    if switched:
        out.line(f"switched: {switched}")
    if retired is not None:
        out.line(f"retired {keys_file}: its keys are in the ledger, the file is sealed in "
                 f"{retired} (--keep-files keeps it)")
    if stripped is not None:
        out.line(f"took {len(stripped.paths)} secret value(s) out of {state.config_file}: "
                 f"they are sealed in the ledger, the file shows their mask; the original "
                 f"is sealed in {stripped.backup_dir} (--keep-files keeps them)")
    if not dry_run:
        out.line(f"the gateway uses from now on: {gateway}", "bold")
        if no_switch:
            _, location = state.location()
            out.warn(f"--no-switch: the gateway does not read this ledger; `moltis-ledger"
                     f"{state.db_option(backend, location)} switch-backend {backend}` "
                     "switches it")


def _gateway_text(state: State) -> str:
    from ledger.ops.installation import describe_location

    try:
        name, location = state.gateway()
    except LedgerError as err:
        return f"(cannot tell: {err})"
    if name == "file":
        return f"the file store {state.config_file} (backend = \"file\")"
    return f"the {name} ledger at {describe_location(location)}"


def _switch_after_migrate(state: State, ledger: Any, backend: str, location: str,
                          no_switch: bool) -> str | None:
    """Point `[config] backend` at this ledger (unless told not to); a description of
    what changed, "" when it already pointed here, None when not switched."""
    from ledger.ops.hand_edit import record_file_sync
    from ledger.ops.switch import set_backend_in_file

    if no_switch:
        return None
    try:
        current = state.gateway()
        recorded = state.installation.section().get("ledger_id")
    except LedgerError:
        current, recorded = ("?", None), None
    ledger_id = ledger.backend.get_meta("ledger_id")
    from ledger.backends.open import same_location

    if current[0] == backend and recorded == ledger_id and same_location(current[1], location):
        return ""
    written = set_backend_in_file(state.config_file, state.data_home, backend, location,
                                  actor=state.actor, ledger_id=ledger_id)
    # our own edit is not a hand edit: the bytes written, not the file read back
    record_file_sync(ledger, state.config_file, data=written)
    state.refresh_installation()
    return f"{state.config_file}: [config] backend = \"{backend}\" (comments kept)"


def _retire_keys_file(state: State, ledger: Any, backup_dir: Path | None) -> Path | None:
    """Remove the plaintext provider_keys.json once the ledger holds its keys and a
    sealed copy of it is in a migration backup (`ledger.ops.retire`)."""
    # lazy: loaded only on this path (CLI start-up)
    from ledger.ops.retire import retire_keys_file

    return retire_keys_file(ledger, state.keys_file, state.data_home, backup_dir)


def _strip_config_file(state: State, ledger: Any, backup_dir: Path | None) -> Any:
    """Take the plaintext secrets the ledger holds sealed out of the config file
    (`ledger.ops.strip_secrets`); the report, or None when there were none."""
    # lazy: loaded only on this path (CLI start-up)
    from ledger.ops.strip_secrets import strip_config_secrets

    stripped = strip_config_secrets(ledger, state.config_file, state.data_home, backup_dir,
                                    state.installation.data)
    if stripped is not None:
        state.refresh_installation()
    return stripped


def _restore_backup_files(state: State, folder: Path) -> None:
    """Put the files of a migration backup back into the config directory (opened with
    the ledger key; the files they replace are backed up first)."""
    from ledger.engine.vault import KeySource
    from ledger.files.safe_io import replace_file
    from ledger.ops.migrate import open_backup

    key = KeySource(key_file=dirs.default_key_file(state.config_home),
                    env=os.environ).load(create=False)
    if key is None:
        raise CommandError(f"no ledger key (MOLTIS_LEDGER_KEY or "
                           f"{dirs.default_key_file(state.config_home)}): a sealed backup "
                           "opens only with the key it was sealed with")
    files = open_backup(folder, key)
    targets = {name: (state.config_home / name) for name in files}
    for name, data in files.items():
        replace_file(targets[name], data)
        state.out.note(f"restored {targets[name]} from {folder}")
    state.refresh_installation()


@cli.command(name="switch-backend")
@click.argument("target", type=click.Choice(["file", "sqlite", "postgres"]))
@click.option("--keep-files", is_flag=True,
              help="Switching to a ledger: keep the plaintext provider_keys.json and the "
                   "secret values in the config file.")
@writes
@common
@pass_state
def switch_backend(state: State, target: str, keep_files: bool) -> None:
    """Move the gateway to another backend, and prove nothing else changed.

    To `file`: back up the files (sealed), write the ledger's head into moltis.toml and
    provider_keys.json with the real secret values (comments kept), set `[config]
    backend = "file"`. To `sqlite`/`postgres` (the ledger named by --db, MOLTIS_CONFIG_*,
    [config] or the default): back up the files, make the ledger equal them (one
    event), set the backend. Either way, the store is then opened exactly as the
    gateway's open_store() opens it and must give the same effective config and
    providers (exit 3 if not). The ledger's history stays where it is.

    Example:

    \b
        moltis-ledger switch-backend file           # back to plain files
        moltis-ledger switch-backend sqlite         # and onto the ledger again
        moltis-ledger --db postgresql://gw@db/moltis switch-backend postgres
    """
    from ledger.ops.switch import switch_to_file

    if target == "file":
        store = state.store(write=True)
        report = switch_to_file(store, config_file=state.config_file,
                                keys_file=state.keys_file, data_dir=state.data_home,
                                actor=state.actor)
        state.refresh_installation()
        _render_switch(state, "the file store", report.backup_dir, report.checked,
                       [f"wrote {p}" for p in report.written])
        return
    _switch_to_ledger(state, target, keep_files)


def _switch_to_ledger(state: State, target: str, keep_files: bool) -> None:
    # lazy, as every module this command needs (CLI start-up)
    from ledger.cli.switch_source import switch_source, switch_target
    from ledger.ops.hand_edit import record_file_sync
    from ledger.ops.installation import describe_location
    from ledger.ops.migrate import migrate as run_migrate
    from ledger.ops.open_store import discard_if_empty, open_store
    from ledger.ops.switch import prove_same, set_backend_in_file
    from ledger.stores.ledger_store import LedgerConfigStore

    if state.installation.parse_error is not None:
        raise state.installation.parse_error
    backend, location = switch_target(state, target)
    source = switch_source(state, target, location)
    if source is None:
        where = f"the {target} ledger at {describe_location(location)}"
        if state.json:
            state.out.json({"gateway": _gateway_text(state), "backup_dir": "",
                            "checked": [], "written": []})  # as a switch writing nothing
        else:
            state.out.line(f"nothing to switch: the gateway already runs on {where}")
        return
    old, old_providers, from_ledger = source.store, source.providers, source.ledger
    try:
        created = backend == "sqlite" and not Path(location).exists()
        store = state.store(write=True, sync=False)
        try:
            report = run_migrate(store.ledger, config_file=state.config_file,
                                 keys_file=state.keys_file, data_dir=state.data_home,
                                 actor=state.actor, whole=True, documents=source.documents,
                                 config_data=source.config_data,
                                 reason=state.reason or f"switch the config backend to {target}: "
                                                        f"the ledger made equal to {source.what}")
        except BaseException:
            if created:
                discard_if_empty(store, location)
                state._store = None
            raise
        wrote = set_backend_in_file(
            state.config_file, state.data_home, target, location, actor=state.actor,
            ledger_id=store.ledger.backend.get_meta("ledger_id"))
        record_file_sync(store.ledger, state.config_file, data=wrote)
        state.refresh_installation()

        async def prove() -> list[str]:
            new = open_store(config_dir=state.config_home, data_dir=state.data_home)
            try:
                if not isinstance(new, LedgerConfigStore):
                    reason = getattr(new, "read_only_reason", None) or "see the log"
                    raise CommandError(f"after the switch, open_store() opens the "
                                       f"{new.backend_name} store ({reason})", 3)
                return await prove_same(old, old_providers, new, new.providers)
            finally:
                await new.close()

        checked = asyncio.run(prove())
        written = [f"wrote {state.config_file}: [config] backend = \"{target}\""]
        if not keep_files:
            written += _retire_and_strip(state, store.ledger, report.backup_dir)
        _render_switch(state, f"the {target} ledger at {describe_location(location)}",
                       report.backup_dir, checked, written)
    finally:
        if from_ledger:
            asyncio.run(old.close())


def _retire_and_strip(state: State, ledger: Any, backup_dir: Path | None) -> list[str]:
    """After a switch to a ledger: the plaintext key file retired, the config file's
    secrets masked; what was done."""
    done = []
    retired = _retire_keys_file(state, ledger, backup_dir)
    if retired is not None:
        done.append(f"retired {state.keys_file} into the sealed backup {retired}")
    stripped = _strip_config_file(state, ledger, backup_dir)
    if stripped is not None:
        done.append(f"took {len(stripped.paths)} secret value(s) out of {state.config_file} "
                    f"(masked; the original sealed in {stripped.backup_dir})")
    return done


def _render_switch(state: State, what: str, backup_dir: Path | None, checked: list[str],
                   written: list[str]) -> None:
    if state.json:
        state.out.json({"gateway": _gateway_text(state), "backup_dir": str(backup_dir or ""),
                        "checked": checked, "written": written})
        return
    if backup_dir is not None:
        state.out.line(f"backup: {backup_dir}")
    for line in written:
        state.out.line(line)
    state.out.line(f"proven: {what} gives the same {' and '.join(checked)}", "green")
    state.out.line(f"the gateway uses from now on: {_gateway_text(state)}", "bold")


@cli.command(name="unseal-backup")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Write the original files into this folder (mode 0600).")
@common
@pass_state
def unseal_backup(state: State, folder: str, out_dir: str) -> None:
    """Open a migration backup with the ledger key: the original files, as they were.

    Files holding secrets are sealed in the backup (AES-256-GCM under the ledger key),
    so this needs the key that was in use (MOLTIS_LEDGER_KEY, MOLTIS_LEDGER_KEY_FILE or
    <config dir>/ledger.key); each file is checked against manifest.json.

    Example:

    \b
        moltis-ledger unseal-backup ~/.moltis/backups/migrate-20261126T162642.053797Z -o /tmp/orig
    """
    from ledger.engine.vault import KeySource
    from ledger.files.dirs import ensure_private_dir
    from ledger.files.safe_io import write_private
    from ledger.ops.migrate import open_backup

    keys = KeySource(key_file=dirs.default_key_file(state.config_home), env=os.environ)
    key = keys.load(create=False)
    if key is None:
        raise CommandError(f"no ledger key ({keys.describe()}): a sealed backup opens only "
                           "with the key it was sealed with")
    target = Path(out_dir)
    if target.resolve() == state.config_home.resolve():
        raise CommandError(f"{target} is the live config directory; to put a backup back "
                           "there, use `moltis-ledger migrate --from-backup`")
    files = open_backup(Path(folder), key)
    ensure_private_dir(target)
    written = []
    for name, data in files.items():
        # files this command produces: a link there is replaced, never followed, and a
        # FIFO or device is refused by name (write_private)
        write_private(target / name, data)
        written.append(str(target / name))
    if state.json:
        state.out.json({"files": written})
    else:
        state.out.line(f"wrote {', '.join(written)} (mode 0600; they may hold secrets in clear)")
