"""The `eventsourcing` library on SQLite, used the way its documentation shows: an
`Application` with PERSISTENCE_MODULE=eventsourcing.sqlite, one `Aggregate` whose
events carry the same kind of change as the ledger's (a path and a value), one event
per `save()`, and an aggregate rebuilt from its stored events by `repository.get`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.workspace import Skip, remove_db, work_dir


class Unavailable(Skip):
    pass


def _modules() -> tuple[Any, Any, Any]:
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
    except ImportError as err:
        raise Unavailable("eventsourcing is not installed (pip install -e '.[bench]')") from err
    return Application, Aggregate, event


def _aggregate_class() -> type:
    _, aggregate_base, event = _modules()

    class ConfigAggregate(aggregate_base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self.doc: dict[str, Any] = {}

        @event("Changed")
        def change(self, path: list[str], value: Any) -> None:
            node = self.doc
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value

    # The classes are made here (eventsourcing is optional), so their topics name a
    # function's locals; register them so a cached aggregate resolves in a new process.
    from eventsourcing.utils import get_topic, register_topic

    for cls in (ConfigAggregate, ConfigAggregate.Created, ConfigAggregate.Changed):
        register_topic(get_topic(cls), cls)
    return ConfigAggregate


_CLASS: type | None = None


def aggregate_class() -> type:
    global _CLASS  # noqa: PLW0603
    if _CLASS is None:
        _CLASS = _aggregate_class()
    return _CLASS


def open_app(path: Path) -> Any:
    application, _, _ = _modules()
    return application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                            "SQLITE_DBNAME": str(path)})


def synchronous_setting(app: Any) -> str:
    """The `PRAGMA synchronous` eventsourcing's connections run with (its default)."""
    with app.recorder.datastore.transaction(commit=False) as cur:
        cur.execute("PRAGMA synchronous")
        level = cur.fetchone()[0]
        cur.execute("PRAGMA journal_mode")
        mode = cur.fetchone()[0]
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return f"journal_mode={mode}, synchronous={names.get(level, level)}"


class Saver:
    """One event per save, on a fresh database."""

    def __init__(self, name: str) -> None:
        self.app = open_app(remove_db(work_dir() / name))
        self.agg = aggregate_class()()
        self.app.save(self.agg)
        self.value = 600

    def save_one(self) -> None:
        self.value += 1
        self.agg.change(["tools", "agent_timeout_secs"], self.value)
        self.app.save(self.agg)


PATHS = (["tools", "agent_timeout_secs"], ["tools", "agent_max_iterations"],
         ["server", "port"], ["identity", "name"])


def cached_aggregate(events: int) -> tuple[Any, Any]:
    """(application, aggregate id) of an aggregate with `events` change events, built
    once per size and kept in the work folder."""
    path = work_dir() / f"es-{events}.db"
    stamp = path.with_suffix(".json")
    cls = aggregate_class()
    topic = f"{cls.__module__}:{cls.__qualname__}"  # events name their class: rebuild if moved
    if path.exists() and stamp.exists():
        info = json.loads(stamp.read_text())
        if info.get("events") == events and info.get("topic") == topic:
            from uuid import UUID

            return open_app(path), UUID(info["id"])
    stamp.unlink(missing_ok=True)
    app = open_app(remove_db(path))
    agg = cls()
    done = 0
    while done < events:
        for i in range(done, min(events, done + 20_000)):
            p = PATHS[i % 4]
            agg.change(p, f"Atlas-{i % 1000}" if p[0] == "identity" else 1024 + i % 60_000)
        app.save(agg)  # many pending events: one transaction
        done = min(events, done + 20_000)
    stamp.write_text(json.dumps({"events": events, "id": str(agg.id), "topic": topic}))
    return app, agg.id
