"""`moltis-ledger serve`: the audit web view (the `web` extra).

Attached to the `cli` group of `ledger.cli.app` when that module is imported. Starlette,
uvicorn and Jinja2 are imported only when the command runs, so the CLI's start-up time
does not grow.
"""

from __future__ import annotations

import errno
import os
import shlex
import stat
from datetime import UTC, datetime, timedelta

import click

from ledger.cli.app import CommandError, State, cli, common, pass_state

MAX_TOKEN_FILE_BYTES = 4096
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
              help="A file holding a bearer token for scripts (Authorization: Bearer ...): "
                   "yours, mode 0600, not a symlink (anything else is refused).")
@click.option("--login-ttl", type=click.IntRange(1, 24 * 60), default=15, show_default=True,
              metavar="MINUTES",
              help="How long the printed one-time login link stays valid.")
@click.option("--secure-cookie", is_flag=True,
              help="Mark the session cookie Secure (when a TLS proxy serves the view).")
@common
@pass_state
def serve(state: State, host: str, port: int, allow_rollback: bool, token_file: str | None,
          login_ttl: int, secure_cookie: bool) -> None:
    """Serve the audit web view: timeline, diffs, config at any point, blame, verify,
    provider credentials (never their values), live updates.

    Prints a URL with a one-time login token (in the URL's #fragment, which the browser
    never sends to the server), valid for --login-ttl minutes; a session ends after an
    hour without a request, or 12 hours after the login. The logged-in operator is
    --actor (default $MOLTIS_LEDGER_ACTOR, else user@host), who is the actor of any
    rollback.

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
    token = read_token_file(token_file) if token_file is not None else None
    store = state.store(write=allow_rollback)
    auth = Auth(login_seconds=login_ttl * 60)
    if token is not None:
        try:
            auth.add_bearer_token(token, operator)
        except ValueError as err:
            raise CommandError(f"{token_file}: {err}") from None
    login = auth.issue_login_token(operator)
    expires = (datetime.now(UTC) + timedelta(seconds=auth.login_seconds)).replace(microsecond=0)
    app = create_app(store, auth=auth, allow_rollback=allow_rollback,
                     secure_cookies=secure_cookie)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    login_url = f"{url}login#token={login}"
    if state.json:
        state.out.json_line({"url": url, "login_url": login_url, "operator": operator,
                             "login_expires": expires.isoformat().replace("+00:00", "Z"),
                             "login_ttl_seconds": int(auth.login_seconds),
                             "allow_rollback": allow_rollback})
    else:
        state.out.line(f"moltis-ledger audit view on {url} ({store.backend_name}, "
                       + ("rollback allowed" if allow_rollback else "read-only") + ")", "bold")
        state.out.line(f"log in as {operator} (one-time link, expires "
                       f"{expires:%Y-%m-%d %H:%M:%S}Z, in {login_ttl} min): {login_url}")
        state.out.note("Ctrl-C to stop")
    if not is_loopback(host):
        state.out.warn(f"listening on {host}, not loopback: plain HTTP; put a TLS proxy in "
                       "front (and pass --secure-cookie)")
    run(app, host, port)


def read_token_file(path: str) -> str:
    """The bearer token in `path`, which must be a private file of this user: not a
    symlink (opened with O_NOFOLLOW), a regular file, owned by the effective user, with
    no group or world permission bits (the checks are on the file descriptor read)."""
    fix = f"chmod 600 {shlex.quote(path)}"
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise CommandError(f"{path}: the token file is a symlink; name the file itself "
                               "(a private regular file, mode 0600)") from None
        raise CommandError(f"{path}: cannot read the token file: {err.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        st = os.fstat(file.fileno())
        mode = stat.S_IMODE(st.st_mode)
        if not stat.S_ISREG(st.st_mode):
            raise CommandError(f"{path}: the token file is not a regular file")
        if st.st_uid != os.geteuid():
            raise CommandError(f"{path}: the token file is owned by uid {st.st_uid}, not by "
                               f"you (uid {os.geteuid()}): the bearer token grants the whole "
                               f"view; use a file of your own ({fix})")
        if mode & 0o077:
            raise CommandError(f"{path}: the token file is open to other users (mode "
                               f"{mode:04o}): the bearer token grants the whole view; "
                               f"{fix}, and replace the token if others may have read it")
        data = file.read(MAX_TOKEN_FILE_BYTES + 1)
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise CommandError(f"{path}: the token file is larger than "
                           f"{MAX_TOKEN_FILE_BYTES} bytes; it should hold one token")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError(f"{path}: the token file is not UTF-8 text") from None
