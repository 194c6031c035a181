"""`moltis-ledger` commands on the configuration itself: show, get, set, unset
and check (migrate is in `switch_cmds`).

Attached to the `cli` group of `ledger.cli.app` when that module is imported.
"""

from __future__ import annotations

import dataclasses
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
from ledger.cli.config_read import array_element, run_get, unknown_key
from ledger.core.escape import visible_escapes
from ledger.errors import ConfigValidationError
from ledger.files import dirs

# ---------------------------------------------------------------------------------
# commands: the configuration


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
    if effective:  # through the store, exactly as the gateway reads it
        from ledger.ops.display import effective_shown

        doc = run_async(effective_shown(store, seq))
    else:
        doc = display_doc(snapshot.config, ledger.vault)
    if seq == 0 and not state.json:
        state.out.note("the ledger is empty: `moltis-ledger migrate` imports moltis.toml"
                       if ledger.head_state().seq == 0 else
                       "seq 0 is the empty state before the first event")
    if state.json or fmt == "json":
        state.out.json(doc)
        return
    import tomlkit

    event = ledger.event(seq) if seq else None
    origin = f"seq {seq}" + (f" ({when(event.time)}, {event.actor})" if event else "")
    what = "effective configuration" if effective else "moltis.toml"
    # TOML writes a control character as `\u001b`; shown the one way every output does
    state.out.text(f"# {what} as of ledger {origin}; secrets masked\n"
                   + visible_escapes(tomlkit.dumps(doc)))


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
    works in scripts. A key that is not set exits 1 (see --effective for defaults); a
    key Moltis does not know says "unknown key" and suggests the nearest known ones
    (unless the ledger holds it: imported unknown keys stay readable). `keys:` paths
    read provider_keys.json.

    Example:

    \b
        moltis-ledger get server.port
        moltis-ledger get providers.openai.api_key      # <secret fp:…>
        moltis-ledger get keys:openai.apiKey
        moltis-ledger get tools.agent_timeout_secs --effective
        moltis-ledger get server --at -1 --json
    """
    run_get(state, path, ref, effective)


@cli.command(name="set", context_settings={"ignore_unknown_options": True})
@click.argument("path")
@click.argument("value")
@click.option("--string", "as_string", is_flag=True,
              help="Store VALUE as a string, without parsing it as JSON/bool/number.")
@click.option("--allow-unknown", is_flag=True,
              help="Store a key Moltis does not know (it ignores it; `check` reports it).")
@expected_seq_option
@writes
@common
@pass_state
def set_(state: State, path: str, value: str, as_string: bool, allow_unknown: bool,
         expected_seq: int | None) -> None:
    """Set PATH to VALUE (one event).

    VALUE is parsed as Moltis parses environment values: a JSON array or object,
    true/false, an integer, a float, else the text itself (--string keeps the text);
    negative numbers are values (`set server.port -1` is checked like any other). For a
    secret (API keys, tokens), pass `-` and type it at a hidden prompt (or pipe it), so
    it never lands in your shell history; it is stored encrypted and shown masked
    everywhere. A table (JSON object) replaces the table at PATH; an array is set as a
    whole. A key Moltis does not know is refused with the nearest known keys
    (--allow-unknown stores it anyway). `keys:` paths write provider_keys.json.

    Example:

    \b
        moltis-ledger set server.port 8080 --reason "free 13131"
        moltis-ledger set tools.exec.sandbox.packages '["curl", "git"]'
        moltis-ledger set identity.name 1984 --string
        moltis-ledger set providers.openai.api_key -        # hidden prompt
        moltis-ledger set keys:openai.baseUrl https://api.openai.com/v1
        moltis-ledger set server.port 8081 --expected-seq 41 # exit 4 if it moved
    """
    from ledger.cli.app import doc_path
    from ledger.core.document import MISSING, get_value, leaves
    from ledger.core.keypaths import format_doc_path
    from ledger.schema.introspect import is_secret_path
    from ledger.schema.provider_keys import is_key_secret_path
    from ledger.typed.env_overrides import fits, parse_env_value
    from ledger.typed.suggest import did_you_mean, suggest_providers, unknown_path

    doc, key = doc_path(path)
    label = format_doc_path(doc, key)
    secret = is_key_secret_path(key) if doc == "keys" else is_secret_path(key)
    # (a refused set must not create an empty ledger)
    held = state.store(write=True).ledger.head_state().document(doc) if (
        _ledger_exists(state)) else {}
    element = array_element(doc, key, action="set", held=held)
    if element is not None:  # also with --allow-unknown: it would not fit the array
        raise element
    if unknown_path(doc, key):
        if not allow_unknown and get_value(held, key) is MISSING:
            raise unknown_key(doc, key, action="set")
        state.out.warn(f"{label} is not a key Moltis knows; it is kept, and "
                       "`moltis-ledger check` reports it")
    name = key[0] if doc == "keys" else (
        key[1] if len(key) > 1 and key[0] == "providers" and key[1] not in (
            "offered", "show_legacy_models") else None)
    near = suggest_providers(name) if name is not None else []
    if near:  # `set providers.gemni.api_key`, `set keys:gemni.apiKey`
        state.out.warn(f"{name!r}: unknown provider name{did_you_mean(near)}")
    text = read_value(label, hidden=secret) if value == "-" else value
    if secret and value != "-" and not state.json:
        state.out.note("tip: pass - as VALUE to type a secret at a hidden prompt, so it stays "
                       "out of your shell history")
    parsed: Any = text if (as_string or secret) else parse_env_value(text)
    if isinstance(parsed, dict):  # each key of a table as a leaf set checks it (review r12)
        for sub, _ in leaves(parsed):
            inner = (*key, *sub)
            if unknown_path(doc, inner) and get_value(held, inner) is MISSING:
                if not allow_unknown:
                    raise unknown_key(doc, inner, action="set")
                state.out.warn(f"{format_doc_path(doc, inner)} is not a key Moltis knows; it "
                               "is kept, and `moltis-ledger check` reports it")
    # a table replaces the one there, as the same JSON in an environment override does
    # (the store's `edit` merges a table into it: a patch; review r11)
    unsets = [key] if isinstance(parsed, dict) and parsed else []
    try:  # the store's public API, the one the gateway writes through
        commit = _edit(state, doc, sets={key: parsed}, unsets=unsets, expected_seq=expected_seq)
    except ConfigValidationError as err:
        if isinstance(parsed, str) or doc != "config" or not fits(text, key):
            raise  # (the text would not fit either: no --string hint, review r11)
        raise ConfigValidationError(f"{err} (pass --string to store the text as a string)",
                                    err.path) from None
    render_commit(state, commit, nothing=f"{label} already has this value")


def _edit(state: State, doc: str, *, sets: dict[tuple[str, ...], Any] | None = None,
          unsets: tuple[tuple[str, ...], ...] | list[tuple[str, ...]] = (),
          expected_seq: int | None) -> Any:
    """One event through the store: moltis.toml paths with the store's public `edit`
    (what the gateway writes through), `keys:` paths with the ledger's key document."""
    store = state.store(write=True)
    kw = state.write_kw(expected_seq)
    if doc == "config":
        return run_async(store.edit(sets, list(unsets), **kw))
    from ledger.stores.contract import run_write

    return run_async(run_write(lambda wait: store.ledger.edit(
        sets, unsets, doc="keys", where="set" if sets else "unset", wait=wait, **kw)))


def _ledger_exists(state: State) -> bool:
    backend, location = state.location()
    return backend != "sqlite" or Path(location).exists()


@cli.command()
@click.argument("path")
@expected_seq_option
@writes
@common
@pass_state
def unset(state: State, path: str, expected_seq: int | None) -> None:
    """Remove PATH (and everything under it); Moltis then uses its default.

    A key Moltis does not know says "unknown key" (with the nearest known ones) unless
    the ledger holds it: imported unknown keys can be removed. `keys:NAME` removes a
    provider_keys.json entry.

    Example:

    \b
        moltis-ledger unset server.port --reason "back to the default"
        moltis-ledger unset tools.exec.sandbox
        moltis-ledger unset keys:custom-old
    """
    from ledger.cli.app import doc_path
    from ledger.core.document import MISSING, get_value
    from ledger.core.keypaths import format_doc_path
    from ledger.typed.suggest import unknown_path

    doc, key = doc_path(path)
    store = state.store(write=True)
    if unknown_path(doc, key) and get_value(
            store.ledger.head_state().document(doc), key) is MISSING:
        raise unknown_key(doc, key, action="unset")
    commit = _edit(state, doc, unsets=[key], expected_seq=expected_seq)
    render_commit(state, commit, nothing=f"{format_doc_path(doc, key)} was not set")


@cli.command()
@click.option("--file", "file", type=click.Path(dir_okay=False), default=None,
              help="Check this moltis.toml instead of the ledger.")
@common
@pass_state
def check(state: State, file: str | None) -> None:
    """Validate the configuration: unknown keys and invalid values, named by path.

    Reports every problem: invalid values and masked secret placeholders (errors: Moltis
    would refuse or misuse them), unknown keys and provider names (warnings, with the
    nearest known names: Moltis ignores them, and they are kept). Exits 1 when there are
    problems. Reads moltis.toml, moltis.yaml/.yml or moltis.json, and names Moltis's
    encrypted key vault (provider_keys.json.enc), which the ledger does not read.

    Example:

    \b
        moltis-ledger check
        moltis-ledger check --file ~/.config/moltis/moltis.toml --json
    """
    from ledger.files.read_notes import ReadNotes
    from ledger.ops.migrate import key_vault_notices, read_config_file
    from ledger.typed.check import check as check_document

    warnings: list[str] = []
    notes = ReadNotes()
    if file is not None:
        source = Path(file)
        if not source.exists():
            raise CommandError(f"{source}: no such file")
        raw = read_config_file(source, notes)  # refuses what is not a regular file
        where = str(source)
        notices = key_vault_notices(source.parent / dirs.KEYS_FILE_NAME)
    else:
        from ledger.backends.write_queue import writer_queue_problem
        from ledger.engine.format_check import format_problem, lists_hold_secrets
        from ledger.ops.keys import key_file_problem

        ledger = state.store().ledger
        snapshot = ledger.head_state()
        raw, where = snapshot.config, f"the ledger at seq {snapshot.seq}"
        notices = key_vault_notices(state.keys_file)
        key_problem = key_file_problem(ledger.vault.keys)
        if key_problem:
            warnings.append(key_problem)
        head_problem = ledger.head_problem()
        if head_problem:
            warnings.append(head_problem)
        queue_problem = writer_queue_problem(ledger.backend)
        if queue_problem:
            warnings.append(queue_problem)
        from ledger.ops.file_digest import META_CONFIG, damaged_record
        from ledger.stores.key_file import META_KEYS

        for meta_key, name in ((META_CONFIG, state.config_file), (META_KEYS, state.keys_file)):
            damaged = damaged_record(ledger, meta_key, str(name))
            if damaged:
                warnings.append(damaged)
        # the head state, not the whole log (that is verify's): cheap, and what an older
        # release would serve
        format_warning = format_problem(
            ledger.backend, snapshot.seq if lists_hold_secrets(
                (snapshot.config, snapshot.keys)) else None, "the configuration at seq")
        if format_warning:
            warnings.append(format_warning)
    problems = check_document(raw, notes)
    for warning in warnings:
        state.out.warn(warning)  # stderr: a --json document stays alone on stdout
    if state.json:
        state.out.json({"source": where, "ok": not problems,
                        "problems": [dataclasses.asdict(p) for p in problems],
                        "notices": notices, "warnings": warnings})
    elif problems:
        state.out.table(("path", "severity", "problem", "message"),
                        [(p.path, p.severity, p.kind, p.message) for p in problems],
                        title=f"{len(problems)} problem(s) in {where}")
    else:
        state.out.line(f"ok: no problems in {where}", "green")
    if not state.json:
        for notice in notices:
            state.out.warn(notice)
    if problems:
        raise click.exceptions.Exit(EXIT_ERROR)
