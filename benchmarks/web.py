"""The audit view's timeline stays fast as the log grows (issue 17): the server time of
a timeline page on the large ledger / the same page on a 1,000-event ledger, both
built the same way (`bigledger`), alternated in one run.

The request is the whole ASGI call of `ledger.web.create_app(store)` in this process
(authentication, the keyset page, rendering the HTML), awaited on the one event loop:
no network, no client. Pages: the first page (newest 50 events), and a filtered page
(`?path=server.port`: one event in four matches, so 200 events are examined for 50).
"""

from __future__ import annotations

from typing import Any

from benchmarks.bigledger import big_ledger
from benchmarks.harness import Alternated, Row, Side, Target, alternate, fmt_time
from benchmarks.profiling import profile_misses
from benchmarks.workspace import Ctx, Skip, async_each

SMALL = 1_000
TOKEN = "benchmark-bearer-token-0123456789"
PAGES = (("first", "/", "i17a", "first page (newest 50)"),
         ("filtered", "/?path=server.port", "i17b", "filtered page (`?path=server.port`)"))


def rows() -> list[Row]:
    return [Row(fig, f"timeline {label}: server time on the large ledger / on {SMALL:,} "
                "events", Target("<=", 2.0, text="≤ 2×")) for _, _, fig, label in PAGES]


def _request(app: Any, target: str) -> Any:
    """One GET through the ASGI app; returns an awaitable that checks the status."""
    path, _, query = target.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {TOKEN}".encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def call() -> None:
        status: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        if status != [200]:
            raise RuntimeError(f"GET {target} answered {status}")

    return call


def run(ctx: Ctx, rows_by_fig: dict[str, Row]) -> None:
    try:
        from ledger.web import create_app
    except ImportError as err:
        raise Skip(f"the web extra is not installed ({err})") from None
    from ledger import SqliteConfigStore

    events = ctx.sizes.big_events
    stores = {"big": SqliteConfigStore(big_ledger(events), read_only=True),
              "small": SqliteConfigStore(big_ledger(SMALL), read_only=True)}
    sides = []
    for size, store in stores.items():
        app = create_app(store)
        app.state.auth.add_bearer_token(TOKEN, "bench")
        for name, target, _, _ in PAGES:
            sides.append(Side(f"{size}-{name}", async_each(_request(app, target)),
                              max(5, ctx.sizes.past_block // 2)))
    alt = alternate(sides, ctx.sizes.rounds)
    _judge(alt, rows_by_fig, events)
    by = {s.name: s for s in sides}
    profile_misses(ctx, rows_by_fig, {fig: by[f"big-{name}"] for name, _, fig, _ in PAGES})
    for store in stores.values():
        store.ledger.close()


def _judge(alt: Alternated, rows: dict[str, Row], events: int) -> None:
    for name, _, fig, _ in PAGES:
        row = rows[fig]
        row.what = row.what.replace("the large ledger", f"{events:,} events")
        row.measured = (f"{events:,} events {fmt_time(alt.median(f'big-{name}'))}, "
                        f"{SMALL:,} events {fmt_time(alt.median(f'small-{name}'))}")
        row.judge_rounds(alt.ratios(f"big-{name}", f"small-{name}"),
                         note_if_missed="the page costs more on the long log")
