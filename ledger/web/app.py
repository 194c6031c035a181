"""The audit web view as an ASGI app: `create_app(store, ...)`.

Server-rendered HTML (Jinja2, autoescaped) and JSON in the CLI's `--json` shapes, over
the store; a small static script adds live timeline rows (server-sent events from the
store's `watch()`), and every page reads without it. Read-only unless created with
`allow_rollback=True`; then a rollback is a dry run first and a POST with the session's
CSRF token and a reason, appended by the logged-in operator as the CLI's rollback event.

Mount it in a gateway (Starlette shown; any ASGI router that sets `root_path` works)::

    from starlette.routing import Mount
    audit = create_app(store)
    token = audit.state.auth.issue_login_token("alice")
    routes = [..., Mount("/audit", app=audit)]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route

from ledger.web import library as lib
from ledger.web import views
from ledger.web.auth import SESSION_COOKIE, Auth, Principal
from ledger.web.http import (
    HttpError,
    SecurityHeaders,
    StaticAssets,
    bounded_int,
    int_param,
    read_form,
    timeline_filter,
)

__all__ = ["create_app"]

Handler = Callable[[Request, Principal], Awaitable[Response]]

HERE = Path(__file__).resolve().parent
KEEPALIVE_SECONDS = 15.0

class _Site:
    def __init__(self, store: lib.LedgerConfigStore, auth: Auth, *, allow_rollback: bool,
                 poll_interval: float, secure_cookies: bool, title: str) -> None:
        self.store = store
        self.auth = auth
        self.allow_rollback = allow_rollback
        self.poll_interval = poll_interval
        self.secure_cookies = secure_cookies
        self.title = title
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
            lstrip_blocks=True)
        self.env.filters.update(visible=views.visible, when=views.when,
                                summary=views.summary, change_line=views.change_line,
                                literal=views.literal, where=views.where)

    # -- plumbing --------------------------------------------------------------------

    @staticmethod
    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return self.auth.bearer(header[7:].strip())
        session = self.auth.session(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            return Principal(session.operator, "session", session.csrf)
        return None

    @staticmethod
    def same_origin(request: Request) -> bool:
        """A POST from a page of this server, or from a script (no Origin, no fetch
        metadata); a browser's cross-site or opaque ("null") origin is refused."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        return urlsplit(origin).netloc == request.headers.get("host", "") != ""

    def render(self, request: Request, principal: Principal | None, template: str,
               status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(
            base=self.base(request), operator=principal.operator if principal else None,
            csrf=principal.csrf if principal else None, allow_rollback=self.allow_rollback,
            title=self.title, backend=self.store.backend_name, **context)
        return HTMLResponse(html, status_code=status)

    def error(self, request: Request, principal: Principal | None, status: int,
              message: str, *, api: bool) -> Response:
        if api:
            return JSONResponse({"error": message, "status": status}, status_code=status)
        return self.render(request, principal, "error.html", status=status,
                           status_code=status, message=message)

    def guard(self, handler: Handler, *, api: bool = False) -> Callable[[Request],
                                                                     Awaitable[Response]]:
        """Authenticate, check origin and CSRF on POST, and map library errors."""

        async def endpoint(request: Request) -> Response:
            principal = self.principal(request)
            if principal is None:
                if api or request.method not in ("GET", "HEAD"):
                    return JSONResponse({"error": "authentication required", "status": 401},
                                        status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
                return RedirectResponse(self.base(request) + "/login", status_code=303)
            try:
                if request.method == "POST":
                    if not self.same_origin(request):
                        raise HttpError(403, "cross-origin request refused")
                    form = await read_form(request)
                    request.state.form = form
                    given = form.get("csrf") or request.headers.get("x-csrf-token")
                    if not self.auth.csrf_ok(principal, given):
                        raise HttpError(403, "the form's CSRF token is missing or wrong; "
                                              "reload the page and try again")
                return await handler(request, principal)
            except HttpError as err:
                return self.error(request, principal, err.status, str(err), api=api)
            except lib.ConflictError as err:
                return self.error(request, principal, 409, str(err), api=api)
            except lib.InputError as err:
                return self.error(request, principal, 400, str(err), api=api)
            except (lib.ReadOnlyError, lib.StoreBusyError) as err:
                return self.error(request, principal, 503, str(err), api=api)
            except lib.NotSupportedError as err:
                return self.error(request, principal, 501, str(err), api=api)
            except lib.LedgerError as err:
                return self.error(request, principal, 500, str(err), api=api)

        return endpoint

    # -- login -----------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if request.method in ("GET", "HEAD"):
            if self.principal(request) is not None:
                return RedirectResponse(self.base(request) + "/", status_code=303)
            return self.render(request, None, "login.html", failed=False)
        if not self.same_origin(request):
            return self.error(request, None, 403, "cross-origin request refused", api=False)
        try:
            form = await read_form(request)
        except HttpError as err:
            return self.error(request, None, err.status, str(err), api=False)
        found = self.auth.login(form.get("token", "").strip())
        if found is None:
            return self.render(request, None, "login.html", status=401, failed=True)
        cookie, _session = found
        response = RedirectResponse(self.base(request) + "/", status_code=303)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=int(self.auth.session_seconds),
                            path=self.base(request) or "/", secure=self.secure_cookies,
                            httponly=True, samesite="strict")
        return response

    async def logout(self, request: Request, _principal: Principal) -> Response:
        self.auth.logout(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(self.base(request) + "/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=self.base(request) or "/",
                               secure=self.secure_cookies, httponly=True, samesite="strict")
        return response

    # -- pages -----------------------------------------------------------------------

    def _page(self, params: QueryParams) -> tuple[lib.TimelineFilter, dict[str, Any]]:
        filt = timeline_filter(params)
        before = int_param(params, "before", lo=1)
        limit = int_param(params, "limit", 50, lo=1) or 50
        return filt, lib.timeline(self.store, filt, before=before, limit=limit) | {
            "before": before, "limit": limit}

    async def timeline(self, request: Request, principal: Principal) -> Response:
        filt, page = self._page(request.query_params)
        query = filt.query()
        older = (f"?{urlencode({**query, 'before': page['next_before']})}"
                 if page["next_before"] else None)
        live = page["before"] is None and not filt.until
        stream = f"{self.base(request)}/stream?" + urlencode(
            {**{k: v for k, v in query.items() if k in ("path", "actor", "source")},
             "after": page["head_seq"]})
        return self.render(request, principal, "timeline.html", page=page, filt=filt,
                           query=query, older=older, live=live, stream=stream,
                           first=f"?{urlencode(query)}" if query else "?")

    @staticmethod
    def _seq(request: Request) -> int:
        """The {seq} of /events/{seq}: a whole number (bounded), else no such event."""
        text = str(request.path_params["seq"])
        seq = bounded_int(text)
        if seq is None:
            shown = text if len(text) <= 24 else text[:24] + "…"
            raise HttpError(404, f"there is no event {shown}")
        return seq

    async def event_page(self, request: Request, principal: Principal) -> Response:
        seq = self._seq(request)
        doc = lib.event_detail(self.store, seq)
        if doc is None:
            raise HttpError(404, f"there is no event {seq} (head seq "
                                  f"{lib.head_seq(self.store)})")
        return self.render(request, principal, "event.html", ev=doc)

    async def diff_page(self, request: Request, principal: Principal) -> Response:
        params = request.query_params
        a = lib.seq_of(self.store, params.get("from") or "-1", lower_bound=True)
        b = lib.seq_of(self.store, params.get("to"))
        doc = lib.diff(self.store, a, b, params.get("path") or None)
        return self.render(request, principal, "diff.html", diff=doc, params=params)

    async def config_page(self, request: Request, principal: Principal) -> Response:
        params = request.query_params
        effective = params.get("effective") in ("1", "on", "true")
        if effective:
            tree = await lib.effective_tree(self.store)
        else:
            tree = lib.config_tree(self.store, lib.seq_of(self.store, params.get("at")))
        at_event = lib.target_event(self.store, tree["seq"])
        rows = views.tree_rows(tree["rows"], lib.format_path)
        return self.render(request, principal, "config.html", tree=tree, rows=rows,
                           at=params.get("at", ""), at_event=at_event,
                           head=lib.head_seq(self.store))

    async def blame_page(self, request: Request, principal: Principal) -> Response:
        params = request.query_params
        seq = lib.seq_of(self.store, params.get("at"))
        doc = lib.blame(self.store, seq, params.get("path") or None)
        return self.render(request, principal, "blame.html", blame=doc,
                           path=params.get("path", ""), at=params.get("at", ""))

    async def verify_page(self, request: Request, principal: Principal) -> Response:
        report = await lib.verify(self.store)
        return self.render(request, principal, "verify.html", report=report)

    async def providers_page(self, request: Request, principal: Principal) -> Response:
        doc = await lib.providers(self.store)
        return self.render(request, principal, "providers.html", doc=doc)

    def _rollback_allowed(self) -> None:
        if not self.allow_rollback:
            raise HttpError(403, "rollback is disabled: this view is read-only (start it "
                                  "with `moltis-ledger serve --allow-rollback`)")

    async def rollback_page(self, request: Request, principal: Principal) -> Response:
        self._rollback_allowed()
        ref = request.query_params.get("to", "")
        if not ref.strip():
            raise HttpError(400, "name the point to roll back to: ?to=REF")
        target = lib.seq_of(self.store, ref)
        head = lib.head_seq(self.store)
        result = lib.rollback(self.store, target, dry_run=True, actor=principal.operator,
                              reason=None)
        return self.render(request, principal, "rollback.html", result=result, head=head,
                           target_event=lib.target_event(self.store, target), ref=ref,
                           reason="", problem=None)

    async def rollback_post(self, request: Request, principal: Principal) -> Response:
        self._rollback_allowed()
        form: dict[str, str] = request.state.form
        target = int_param(form, "to")
        expected = int_param(form, "expected_seq")
        reason = form.get("reason", "").strip()
        if target is None or expected is None:
            raise HttpError(400, "the form lacks the target or the expected seq")
        if not reason:
            preview = lib.rollback(self.store, target, dry_run=True,
                                   actor=principal.operator, reason=None)
            return self.render(request, principal, "rollback.html", status=400,
                               result=preview, head=lib.head_seq(self.store),
                               target_event=lib.target_event(self.store, target),
                               ref=str(target), reason="",
                               problem="a reason is required: say why you roll back")
        result = await asyncio.to_thread(
            lib.rollback, self.store, target, dry_run=False, actor=principal.operator,
            reason=form.get("reason", ""), expected_seq=expected)
        return RedirectResponse(f"{self.base(request)}/events/{result['seq']}"
                                + ("?rolled_back=1" if result["appended"] else ""),
                                status_code=303)

    # -- JSON ------------------------------------------------------------------------

    async def api_log(self, request: Request, _principal: Principal) -> Response:
        _filt, page = self._page(request.query_params)
        return JSONResponse({k: page[k] for k in ("head_seq", "events", "next_before")})

    async def api_event(self, request: Request, _principal: Principal) -> Response:
        seq = self._seq(request)
        doc = lib.event_detail(self.store, seq)
        if doc is None:
            raise HttpError(404, f"there is no event {seq}")
        return JSONResponse(doc)

    async def api_diff(self, request: Request, _principal: Principal) -> Response:
        params = request.query_params
        ref = params.get("from")
        if not ref:
            raise HttpError(400, "from=REF is required")
        return JSONResponse(lib.diff(self.store, lib.seq_of(self.store, ref, lower_bound=True),
                                     lib.seq_of(self.store, params.get("to")),
                                     params.get("path") or None))

    async def api_show(self, request: Request, _principal: Principal) -> Response:
        return JSONResponse(lib.show(self.store, lib.seq_of(self.store,
                                                            request.query_params.get("at"))))

    async def api_config(self, request: Request, _principal: Principal) -> Response:
        params = request.query_params
        if params.get("effective") in ("1", "on", "true"):
            return JSONResponse(await lib.effective_tree(self.store))
        return JSONResponse(lib.config_tree(self.store, lib.seq_of(self.store, params.get("at"))))

    async def api_blame(self, request: Request, _principal: Principal) -> Response:
        params = request.query_params
        return JSONResponse(lib.blame(self.store, lib.seq_of(self.store, params.get("at")),
                                      params.get("path") or None))

    async def api_verify(self, _request: Request, _principal: Principal) -> Response:
        report = await lib.verify(self.store)
        return JSONResponse(report, status_code=200 if report["ok"] else 409)

    async def api_providers(self, _request: Request, _principal: Principal) -> Response:
        return JSONResponse((await lib.providers(self.store))["providers"])

    async def api_rollback(self, request: Request, principal: Principal) -> Response:
        self._rollback_allowed()
        form: dict[str, str] = request.state.form
        ref = form.get("to", "")
        if not ref.strip():
            raise HttpError(400, "to=REF is required")
        dry_run = form.get("dry_run", "") in ("1", "true", "on")
        reason = form.get("reason", "").strip()
        if not dry_run and not reason:
            raise HttpError(400, "reason is required")
        target = lib.seq_of(self.store, ref)
        result = await asyncio.to_thread(
            lib.rollback, self.store, target, dry_run=dry_run, actor=principal.operator,
            reason=form.get("reason") or None, expected_seq=int_param(form, "expected_seq"))
        return JSONResponse(result)

    # -- live updates ----------------------------------------------------------------

    async def stream(self, request: Request, _principal: Principal) -> Response:
        params = request.query_params
        filt = timeline_filter(params)
        last = request.headers.get("last-event-id", "").strip()
        after = (int_param({"Last-Event-ID": last}, "Last-Event-ID")
                 if last.isascii() and last.isdigit()
                 else int_param(params, "after", lib.head_seq(self.store)))
        return StreamingResponse(self._events(filt, after), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    async def _events(self, filt: lib.TimelineFilter, after: int | None) -> AsyncIterator[str]:
        queue: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue(maxsize=256)

        async def pump() -> None:
            try:
                async for doc in lib.watch(self.store, after, filt, self.poll_interval):
                    await queue.put(doc)
            except Exception as err:  # reported to the page; the stream ends
                await queue.put(err)

        task = asyncio.create_task(pump())
        try:
            yield "retry: 2000\n: live timeline\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if isinstance(item, BaseException):
                    yield f"event: problem\ndata: {json.dumps(str(item))}\n\n"
                    return
                data = json.dumps({**item, "display": views.display(item)})
                yield f"id: {item['seq']}\nevent: ledger\ndata: {data}\n\n"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- routes ----------------------------------------------------------------------

    def routes(self) -> list[Route | Mount]:
        g = self.guard
        return [
            Route("/login", self.login_page, methods=["GET", "POST"]),
            Route("/logout", g(self.logout), methods=["POST"]),
            Route("/", g(self.timeline)),
            Route("/events/{seq}", g(self.event_page)),
            Route("/diff", g(self.diff_page)),
            Route("/config", g(self.config_page)),
            Route("/blame", g(self.blame_page)),
            Route("/verify", g(self.verify_page)),
            Route("/providers", g(self.providers_page)),
            Route("/rollback", g(self.rollback_page), methods=["GET"]),
            Route("/rollback", g(self.rollback_post), methods=["POST"]),
            Route("/stream", g(self.stream, api=True)),
            Route("/api/log", g(self.api_log, api=True)),
            Route("/api/events/{seq}", g(self.api_event, api=True)),
            Route("/api/diff", g(self.api_diff, api=True)),
            Route("/api/show", g(self.api_show, api=True)),
            Route("/api/config", g(self.api_config, api=True)),
            Route("/api/blame", g(self.api_blame, api=True)),
            Route("/api/verify", g(self.api_verify, api=True)),
            Route("/api/providers", g(self.api_providers, api=True)),
            Route("/api/rollback", g(self.api_rollback, api=True), methods=["POST"]),
            Route("/api/stream", g(self.stream, api=True)),
            Mount("/static", app=StaticAssets(directory=HERE / "static"), name="static"),
        ]


def create_app(store: lib.LedgerConfigStore, *, auth: Auth | None = None,
               allow_rollback: bool = False, poll_interval: float = 0.25,
               secure_cookies: bool = False, title: str = "Moltis configuration ledger"
               ) -> Starlette:
    """The audit view over `store` (a ledger store: SQLite or PostgreSQL).

    `app.state.auth` (an `Auth`) issues login tokens and holds bearer tokens; nothing
    is served without one. The store stays the caller's to close.
    """
    auth = auth if auth is not None else Auth()
    site = _Site(store, auth, allow_rollback=allow_rollback, poll_interval=poll_interval,
                 secure_cookies=secure_cookies, title=title)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        api = request.url.path.startswith(f"{site.base(request)}/api/")
        message = str(getattr(exc, "detail", "")) or "not found"
        return site.error(request, site.principal(request), status, message, api=api)

    app = Starlette(routes=site.routes(), exception_handlers={404: not_found, 405: not_found})
    app.add_middleware(SecurityHeaders)
    app.state.auth = auth
    app.state.store = store
    return app
