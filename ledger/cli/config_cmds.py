"""`moltis-ledger` commands on the configuration itself: migrate, show, get, set,
unset and check.

Attached to the `cli` group of `ledger.cli.app` when that module is imported.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import click

from ledger.cli.app import (
    EXIT_ERROR,
    CommandError,
    State,
    at_option,
    cli,
    common,
    expected_seq_option,
    pass_state,
    read_value,
    render_commit,
    run_async,
    writes,
)
from ledger.errors import ConfigValidationError
from ledger.files import dirs

# ---------------------------------------------------------------------------------
# commands: the configuration


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show what would be imported; write nothing.")
@writes
@common
@pass_state
def migrate(state: State, dry_run: bool) -> None:
    """Import moltis.toml and provider_keys.json into the ledger, after a backup.

    The files are first copied, with a manifest of their blake3 hashes, into
    <data dir>/backups/migrate-<time>/, then imported as one event (source `import`).
    Running it again appends nothing if the files are unchanged; after a hand edit it
    imports only what changed in the file, and never reverts values set in the
    ledger since.

    Example:

    \b
        moltis-ledger migrate --dry-run
        moltis-ledger migrate --reason "move the config to the ledger"
    """
    from ledger.ops.display import display_change
    from ledger.ops.migrate import migrate as run_migrate

    config_file, keys_file = state.config_file, state.keys_file
    if not config_file.exists() and not keys_file.exists():
        raise CommandError(f"nothing to migrate: neither {config_file} nor {keys_file} exists "
                           "(point --config-dir or MOLTIS_CONFIG_DIR at Moltis's config folder)")
    backend, location = state.location()
    if dry_run and backend == "sqlite" and not Path(location).exists():
        from ledger.engine.vault import KeySource
        from ledger.stores.ledger_store import MemoryConfigStore

        ledger = MemoryConfigStore(keys=KeySource(
            key_file=dirs.default_key_file(state.config_home), env=os.environ)).ledger
    else:
        ledger = state.store(write=not dry_run).ledger
    report = run_migrate(ledger, config_file=config_file, keys_file=keys_file,
                         data_dir=state.data_home, dry_run=dry_run, actor=state.actor,
                         reason=state.reason)
    changes = [display_change(c, ledger.vault) for c in report.changes]
    seq = report.commit.seq if report.commit else ledger.head_state().seq
    if state.json:
        state.out.json({"dry_run": dry_run, "appended": report.appended, "seq": seq,
                        "backup_dir": str(report.backup_dir) if report.backup_dir else None,
                        "sources": report.sources, "changes": changes})
        return
    out = state.out
    sources = ", ".join(report.sources.values()) or "(no files)"
    if report.backup_dir is not None:
        out.line(f"backup: {report.backup_dir} (copies of the files and manifest.json with "
                 "their blake3 hashes)")
    if dry_run:
        out.line(f"dry run: would import {len(changes)} change(s) from {sources}; nothing "
                 "written, no backup made", "bold")
    elif report.appended:
        out.line(f"seq {seq}: imported {len(changes)} change(s) from {sources}", "bold")
    else:
        out.line(f"nothing to import: the ledger already has every value of {sources} "
                 f"(head seq {seq})")
    limit = 20 if not state.verbose else len(changes)
    out.changes(changes[:limit])
    if len(changes) > limit:
        out.line(f"  … {len(changes) - limit} more (`moltis-ledger log --limit 1 --json` "
                 "lists them all)", "dim")


@cli.command()
@at_option
@click.option("--effective", is_flag=True,
              help="Apply schema defaults, MOLTIS_* environment and ${VAR} substitution.")
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), default="toml",
              show_default=True)
@common
@pass_state
def show(state: State, ref: str | None, effective: bool, fmt: str) -> None:
    """Print the configuration (moltis.toml as the ledger holds it), secrets masked.

    Without --effective: only the keys that were set, as the file would hold them.
    With --effective: what the gateway runs with (defaults, environment, ${VAR}).

    Example:

    \b
        moltis-ledger show
        moltis-ledger show --at 12 --format json
        moltis-ledger show --at 2026-11-24T09:00:00Z
        moltis-ledger show --effective --json | jq .server.port
    """
    from ledger.cli.render import when
    from ledger.ops.display import display_doc

    store = state.store()
    ledger = store.ledger
    seq = state.seq(ref)
    snapshot = ledger.state_at(seq)
    if effective:
        from ledger.ops.display import effective_document
        from ledger.typed.layers import effective_config

        eff = effective_config(snapshot.config, env=os.environ, opener=ledger.vault,
                               where=f"ledger seq {seq}")
        doc = effective_document(eff.config)
    else:
        doc = display_doc(snapshot.config, ledger.vault)
    if seq == 0 and not state.json:
        state.out.note("the ledger is empty: `moltis-ledger migrate` imports moltis.toml")
    if state.json or fmt == "json":
        state.out.json(doc)
        return
    import tomlkit

    event = ledger.event(seq) if seq else None
    origin = f"seq {seq}" + (f" ({when(event.time)}, {event.actor})" if event else "")
    what = "effective configuration" if effective else "moltis.toml"
    state.out.text(f"# {what} as of ledger {origin}; secrets masked\n" + tomlkit.dumps(doc))


@cli.command()
@click.argument("path")
@at_option
@click.option("--effective", is_flag=True,
              help="The value the gateway uses (defaults, environment), and where it came "
                   "from.")
@common
@pass_state
def get(state: State, path: str, ref: str | None, effective: bool) -> None:
    """Print one value (or table) of the configuration, secrets masked.

    Strings print as they are and other values as JSON, so `$(moltis-ledger get ...)`
    works in scripts. A key that is not set exits 1 (see --effective for defaults).

    Example:

    \b
        moltis-ledger get server.port
        moltis-ledger get providers.openai.api_key      # <secret fp:…>
        moltis-ledger get tools.agent_timeout_secs --effective
        moltis-ledger get server --at -1 --json
    """
    from ledger.cli.render import json_text, value_text
    from ledger.core.document import MISSING, get_value
    from ledger.core.keypaths import format_path, parse_path
    from ledger.ops.display import display_value

    key = parse_path(path)
    store = state.store()
    ledger = store.ledger
    seq = state.seq(ref)
    snapshot = ledger.state_at(seq)
    source: dict[str, Any] | None = None
    if effective:
        from ledger.ops.display import effective_document
        from ledger.typed.layers import effective_config

        eff = effective_config(snapshot.config, env=os.environ, opener=ledger.vault,
                               where=f"ledger seq {seq}")
        value = get_value(effective_document(eff.config), key)
        if ref is None and value is not MISSING:
            meta = run_async(store.source_metadata())
            prov = meta.get(format_path(key))
            source = prov.to_dict() if prov is not None else None
    else:
        value = get_value(snapshot.config, key)
        if value is not MISSING:
            value = display_value(value, ledger.vault)
    if value is MISSING:
        from ledger.schema.introspect import field_at

        hint = (" (it has a default: see `get --effective`)"
                if not effective and field_at(key) is not None else "")
        raise CommandError(f"{format_path(key)} is not set at seq {seq}{hint}")
    if state.json:
        doc: dict[str, Any] = {"path": format_path(key), "seq": seq, "value": value}
        if effective:
            doc["source"] = source
        state.out.json(doc)
        return
    state.out.text(json_text(value) if isinstance(value, dict) else value_text(value))
    if source is not None:
        state.out.note(f"from {source.get('layer')}: {source.get('origin', '')}".rstrip(": "))


@cli.command(name="set")
@click.argument("path")
@click.argument("value")
@click.option("--string", "as_string", is_flag=True,
              help="Store VALUE as a string, without parsing it as JSON/bool/number.")
@expected_seq_option
@writes
@common
@pass_state
def set_(state: State, path: str, value: str, as_string: bool,
         expected_seq: int | None) -> None:
    """Set PATH to VALUE (one event).

    VALUE is parsed as Moltis parses environment values: a JSON array or object,
    true/false, an integer, a float, else the text itself (--string keeps the text).
    For a secret (API keys, tokens), pass `-` and type it at a hidden prompt (or pipe
    it), so it never lands in your shell history; it is stored encrypted and shown
    masked everywhere.

    Example:

    \b
        moltis-ledger set server.port 8080 --reason "free 13131"
        moltis-ledger set tools.exec.sandbox.packages '["curl", "git"]'
        moltis-ledger set identity.name 1984 --string
        moltis-ledger set providers.openai.api_key -        # hidden prompt
        moltis-ledger set server.port 8081 --expected-seq 41 # exit 4 if it moved
    """
    from ledger.core.keypaths import format_path, parse_path
    from ledger.schema.introspect import field_at, is_secret_path
    from ledger.typed.layers import parse_env_value

    key = parse_path(path)
    secret = is_secret_path(key)
    text = read_value(format_path(key), hidden=secret) if value == "-" else value
    if secret and value != "-" and not state.json:
        state.out.note("tip: pass - as VALUE to type a secret at a hidden prompt, so it stays "
                       "out of your shell history")
    parsed: Any = text if (as_string or secret) else parse_env_value(text)
    if field_at(key) is None:
        state.out.warn(f"{format_path(key)} is not a key Moltis knows; it is kept, and "
                       "`moltis-ledger check` reports it")
    ledger = state.store(write=True).ledger
    try:
        commit = ledger.edit({key: parsed}, where="set", **state.write_kw(expected_seq))
    except ConfigValidationError as err:
        if isinstance(parsed, str):
            raise
        raise ConfigValidationError(f"{err} (pass --string to store the text as a string)",
                                    err.path) from None
    render_commit(state, commit, nothing=f"{format_path(key)} already has this value")


@cli.command()
@click.argument("path")
@expected_seq_option
@writes
@common
@pass_state
def unset(state: State, path: str, expected_seq: int | None) -> None:
    """Remove PATH (and everything under it); Moltis then uses its default.

    Example:

    \b
        moltis-ledger unset server.port --reason "back to the default"
        moltis-ledger unset tools.exec.sandbox
    """
    from ledger.core.keypaths import format_path, parse_path

    key = parse_path(path)
    ledger = state.store(write=True).ledger
    commit = ledger.edit(unsets=[key], where="unset", **state.write_kw(expected_seq))
    render_commit(state, commit, nothing=f"{format_path(key)} was not set")


@cli.command()
@click.option("--file", "file", type=click.Path(dir_okay=False), default=None,
              help="Check this moltis.toml instead of the ledger.")
@common
@pass_state
def check(state: State, file: str | None) -> None:
    """Validate the configuration: unknown keys and invalid values, named by path.

    Exits 1 when there are problems. Unknown keys are kept (Moltis ignores them).

    Example:

    \b
        moltis-ledger check
        moltis-ledger check --file ~/.config/moltis/moltis.toml --json
    """
    from ledger.typed.check import check as check_document

    if file is not None:
        from ledger.ops.migrate import read_config_file

        source = Path(file)
        if not source.is_file():
            raise CommandError(f"{source}: no such file")
        raw = read_config_file(source)
        where = str(source)
    else:
        snapshot = state.store().ledger.head_state()
        raw, where = snapshot.config, f"the ledger at seq {snapshot.seq}"
    problems = check_document(raw)
    if state.json:
        state.out.json({"source": where, "ok": not problems,
                        "problems": [dataclasses.asdict(p) for p in problems]})
    elif problems:
        state.out.table(("path", "problem", "message"),
                        [(p.path, p.kind, p.message) for p in problems],
                        title=f"{len(problems)} problem(s) in {where}")
    else:
        state.out.line(f"ok: no problems in {where}", "green")
    if problems:
        raise click.exceptions.Exit(EXIT_ERROR)
