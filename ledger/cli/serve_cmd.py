"""`moltis-ledger serve`: the audit web view (the `web` extra).

Attached to the `cli` group of `ledger.cli.app` when that module is imported. Starlette,
uvicorn and Jinja2 are imported only when the command runs, so the CLI's start-up time
does not grow.
"""

from __future__ import annotations

from pathlib import Path

import click

from ledger.cli.app import CommandError, State, cli, common, pass_state

WEB_HINT = ("the web view needs the `web` extra: pip install 'moltis-config-ledger[web]' "
            "(Starlette, uvicorn, Jinja2)")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on (loopback by default).")
@click.option("--port", type=click.IntRange(1, 65535), default=8787, show_default=True)
@click.option("--allow-rollback", is_flag=True,
              help="Allow rollbacks from the browser (a dry run, then a confirmed POST). "
                   "Read-only without it.")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A file holding a bearer token for scripts (Authorization: Bearer ...).")
@click.option("--secure-cookie", is_flag=True,
              help="Mark the session cookie Secure (when a TLS proxy serves the view).")
@common
@pass_state
def serve(state: State, host: str, port: int, allow_rollback: bool, token_file: str | None,
          secure_cookie: bool) -> None:
    """Serve the audit web view: timeline, diffs, config at any point, blame, verify,
    provider credentials (never their values), live updates.

    Prints a URL with a one-time login token (in the URL's #fragment, which the browser
    never sends to the server). The logged-in operator is --actor (default
    $MOLTIS_LEDGER_ACTOR, else user@host), who is the actor of any rollback.

    Example:

    \b
        moltis-ledger serve
        moltis-ledger --actor alice serve --allow-rollback --port 9000
        moltis-ledger serve --token-file ~/.config/moltis/web.token   # + scripts
    """
    try:
        from ledger.web import Auth, create_app
        from ledger.web.serve import is_loopback, run
    except ImportError as err:
        raise CommandError(f"{WEB_HINT} ({err})") from None
    from ledger.core.actor import resolve_actor

    operator = resolve_actor(state.actor)
    store = state.store(write=allow_rollback)
    auth = Auth()
    if token_file is not None:
        token = Path(token_file).read_text(encoding="utf-8").strip()
        try:
            auth.add_bearer_token(token, operator)
        except ValueError as err:
            raise CommandError(f"{token_file}: {err}") from None
    login = auth.issue_login_token(operator)
    app = create_app(store, auth=auth, allow_rollback=allow_rollback,
                     secure_cookies=secure_cookie)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    login_url = f"{url}login#token={login}"
    if state.json:
        state.out.json_line({"url": url, "login_url": login_url, "operator": operator,
                             "allow_rollback": allow_rollback})
    else:
        state.out.line(f"moltis-ledger audit view on {url} ({store.backend_name}, "
                       + ("rollback allowed" if allow_rollback else "read-only") + ")", "bold")
        state.out.line(f"log in as {operator} (the link works once): {login_url}")
        state.out.note("Ctrl-C to stop")
    if not is_loopback(host):
        state.out.warn(f"listening on {host}, not loopback: plain HTTP; put a TLS proxy in "
                       "front (and pass --secure-cookie)")
    run(app, host, port)
