"""Promise 4: bad input gives a clear error and changes nothing.

Every bad input below is tried through the library (it must raise one of the typed
errors, subclasses of `LedgerError`) and, for a sample, through the CLI (exit 1-5, a
message naming the input, never a traceback or an "unexpected" error), each within a
time bound. Afterwards the ledger has exactly the events it had before (same seq and
head hash) and every file is byte-identical (lock files aside: taking the lock is not
a change). Hypothesis generates the invalid TOML and JSON, the wrong types for typed
fields, the bad paths and the bad REFs; the absurd sizes, non-UTF-8 bytes, bad
environment, corrupt key files and foreign databases are listed by hand.

Two inputs are accepted on purpose (documented behaviour), and checked as such: a
MOLTIS_* override with a bad value is ignored with a warning naming the variable (as
Moltis would, minus dropping the good ones), and `set` of a key the schema does not
know (an unknown section included) is kept with a warning, which `check` reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import SqliteConfigStore
from ledger.backends.base import FORMAT_VERSION
from ledger.core.keypaths import parse_path
from ledger.engine.vault import KeySource
from ledger.errors import (
    ConfigValidationError,
    FormatVersionError,
    InputError,
    InvalidPathError,
    InvalidRefError,
    LedgerError,
    ParseError,
    SecretKeyError,
    StoreError,
    VerificationError,
)
from ledger.ops.migrate import migrate, read_config_file
from ledger.stores.file_providers import FileProviderStore
from ledger.stores.file_store import FileConfigStore
from ledger.stores.key_file import read_keys_file
from tests.conftest import run
from tests.torture import stats
from tests.torture.helpers import Result, head_of, pool_map, run_cli

pytestmark = pytest.mark.torture

TIME_BOUND = 30.0  # seconds; generous on a loaded 2-core machine, yet no hang passes
EXAMPLES = int(os.environ.get("LEDGER_TORTURE_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow,
                                           HealthCheck.filter_too_much])
BIG = 50 << 20  # "absurd": 50 MB
DEEP = 10_000

CONFIG_TOML = """# moltis.toml of the torture world: comments and unknown keys must survive
[server]
port = 8080
bind = "127.0.0.1"

[identity]
name = "Atlas"

[providers.openai]
api_key = "sk-torture-config-secret"
models = ["gpt-5"]

[tools]
agent_timeout_secs = 30

[mystery]
unknown_key = "kept"
"""
KEYS_JSON = '{"anthropic": {"apiKey": "sk-torture-keys-secret", "models": ["claude"]}}\n'


@dataclass
class World:
    """A migrated installation: config dir with the files, a ledger with history."""

    root: Path
    config_dir: Path
    data_dir: Path
    db: Path
    store: SqliteConfigStore
    cases: Path
    _n: int = 0
    cli_cases: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def snapshot(self) -> tuple[Any, ...]:
        files = {}
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root)
            if path.is_dir() or path.name.endswith(".lock") or rel.parts[0] == "data":
                continue  # the ledger is compared by its head; lock files are not changes
            if path.name == "ledger-head.hwm":
                continue  # the mirror's high-water mark beside the key: derived on open
            if path.name.endswith("-shm") or (path.name.endswith("-wal")
                                              and not path.stat().st_size):
                continue  # SQLite's index of an empty log, made by any (read-only) open
            files[str(rel)] = blake3(path.read_bytes()).hexdigest()
        return head_of(self.db), files

    def case_dir(self) -> Path:
        self._n += 1
        path = self.cases / f"c{self._n}"
        path.mkdir(parents=True)
        return path


@pytest.fixture
def world(tmp_path: Path) -> World:
    config_dir = Path(os.environ["MOLTIS_CONFIG_DIR"])
    data_dir = Path(os.environ["MOLTIS_DATA_DIR"])
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "moltis.toml").write_text(CONFIG_TOML)
    (config_dir / "provider_keys.json").write_text(KEYS_JSON)
    db = data_dir / "moltis.db"
    store = SqliteConfigStore(db, keys=KeySource())
    report = migrate(store.ledger, config_file=config_dir / "moltis.toml",
                     keys_file=config_dir / "provider_keys.json", data_dir=data_dir)
    assert report.appended
    for port in (8081, 8082, 8083):
        store.ledger.edit({("server", "port"): port}, actor="alice", reason="history")
    cases = tmp_path / "cases"
    cases.mkdir()
    w = World(tmp_path, config_dir, data_dir, db, store, cases)
    yield w
    store.ledger.close()


def refused(world: World, call: Callable[[], Any], errors: type[BaseException] | tuple[
        type[BaseException], ...] = LedgerError, mentions: tuple[str, ...] = ()) -> BaseException:
    """`call` raises one of the typed errors, quickly, naming the input; nothing changed."""
    before = world.snapshot()
    started = time.monotonic()
    with pytest.raises(LedgerError) as info:
        call()
    elapsed = time.monotonic() - started
    assert elapsed < TIME_BOUND, f"took {elapsed:.1f}s"
    assert isinstance(info.value, errors), f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    for text in mentions:
        assert text in message, f"{text!r} not named in: {message[:300]}"
    assert world.snapshot() == before, "a refused input changed something"
    stats.add("bad_inputs")
    return info.value


def cli_case(world: World, label: str, *args: str, stdin: bytes | None = None,
             env: dict[str, str] | None = None, codes: tuple[int, ...] = (1,),
             mentions: tuple[str, ...] = ()) -> None:
    """Queue a CLI trial; `run_cli_cases` runs them two at a time."""
    world.cli_cases.append((label, {"args": args, "stdin": stdin, "env": env, "codes": codes,
                                    "mentions": mentions}))


def run_cli_cases(world: World) -> None:
    cases, world.cli_cases = world.cli_cases, []
    before = world.snapshot()

    def one(item: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any], Result]:
        label, c = item
        env = {**os.environ, **c["env"]} if c["env"] else None
        return label, c, run_cli("--db", str(world.db), *c["args"], stdin=c["stdin"], env=env)

    for label, c, res in pool_map(one, cases):
        assert res.code in c["codes"], f"{label}: exit {res.code}\n{res.err[-2000:]}"
        assert "Traceback" not in res.err and "unexpected" not in res.err, f"{label}: {res.err}"
        assert res.err.strip(), f"{label}: no message"
        for text in c["mentions"]:
            assert text in res.err, f"{label}: {text!r} not named in: {res.err[-500:]}"
        stats.add("bad_inputs")
    assert world.snapshot() == before, "a refused CLI input changed something"


def write_case(world: World, name: str, data: bytes | str) -> Path:
    path = world.case_dir() / name
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


def file_doors(world: World, path: Path, errors: type[LedgerError] | tuple[
        type[LedgerError], ...] = (ParseError, ConfigValidationError), *,
        unreadable: bool = True) -> None:
    """A bad moltis.toml / moltis.json through every library door that reads one (the
    plain reader only when the file cannot even be read as a document)."""
    where = (str(path),)
    refused(world, lambda: run(FileConfigStore(path).load_raw()), errors, where)
    refused(world, lambda: run(FileConfigStore(path).update_raw(
        lambda c: setattr(c.server, "port", 1))), errors, where)
    if unreadable:
        refused(world, lambda: read_config_file(path), errors, where)
    refused(world, lambda: migrate(world.store.ledger, config_file=path, keys_file=None,
                                   data_dir=world.data_dir), errors)


def keys_doors(world: World, path: Path) -> None:
    """A bad provider_keys.json through every library door that reads one."""
    where = (str(path),)
    refused(world, lambda: read_keys_file(path), (ParseError, ConfigValidationError), where)
    refused(world, lambda: run(FileProviderStore(path).list()),
            (ParseError, ConfigValidationError), where)
    refused(world, lambda: run(FileProviderStore(path).set("openai", api_key="sk-new")),
            (ParseError, ConfigValidationError), where)
    refused(world, lambda: migrate(world.store.ledger, config_file=None, keys_file=path,
                                   data_dir=world.data_dir), (ParseError, ConfigValidationError))


# -- generated: invalid TOML and JSON ---------------------------------------------------

TOML_PIECES = ['[server]\nport = 8080\n', 'name = "x"\n', '[identity]\nname = "Atlas"\n',
               '[[hooks.hooks]]\nname = "a"\n', 'a.b.c = 1\n', 'arr = [1, 2, 3]\n',
               'inline = { x = 1, y = "z" }\n', '# comment\n', 's = """multi\nline"""\n',
               "lit = 'x'\n", 'd = 1979-05-27T07:32:00Z\n', '[tools.exec.sandbox]\n']
TOML_DEFECTS = ['[', ']', '=', '"', "'", '{', '}', ',', '\n= 1\n', '[a]\n[a]\n', 'x = 1\nx = 2\n',
                'k = \n', '"""', '[[', ']]', 'a..b = 1\n', '= =\n', '[]\n', 'x = [1,\n',
                'y = {a = 1,}\n', 'z = 01\n', 't = 1979-13-45\n', '\\', '\x00', '\x7f',
                'n = nan_\n', 'q = "\\q"\n', '[server]\nport = 1\n[server]\n']


def _invalid_toml(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return True
    return False


def _corrupt(pieces: list[str], defects: list[tuple[int, str]]) -> str:
    text = "".join(pieces)
    for pos, defect in defects:
        at = pos % (len(text) + 1)
        text = text[:at] + defect + text[at:]
    return text


invalid_toml = st.one_of(
    st.builds(_corrupt, st.lists(st.sampled_from(TOML_PIECES), max_size=6),
              st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(TOML_DEFECTS)),
                       min_size=1, max_size=3)),
    st.text(max_size=80),
).filter(_invalid_toml)


def _invalid_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)


def _insert(value: Any, pos: int, defect: str) -> str:
    text = json.dumps(value)
    at = pos % (len(text) + 1)
    return text[:at] + defect + text[at:]


invalid_json = st.one_of(
    st.builds(_insert, json_values, st.integers(0, 1000),
              st.sampled_from(['{', '}', '[', ']', ',', ':', '"', 'x', '\\', ',,', '{"a"}',
                               'nul'])),
    st.text(max_size=60),
).filter(lambda t: t.strip() and _invalid_json(t))  # an empty file is an empty document
# well-formed JSON in a shape provider_keys.json cannot have
bad_field_value = st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False),
                            st.lists(st.integers(), min_size=1, max_size=3),
                            st.dictionaries(st.text(max_size=4), st.integers(), min_size=1,
                                            max_size=2))
bad_keys_shape = st.one_of(
    json_values.filter(lambda v: not isinstance(v, dict)),
    st.dictionaries(st.sampled_from(["openai", "anthropic", "custom-x"]),
                    st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False),
                              st.lists(st.text(max_size=3), max_size=2)),
                    min_size=1, max_size=2),
    st.builds(lambda name, fld, v: {name: {fld: v}}, st.sampled_from(["openai", "custom-x"]),
              st.sampled_from(["apiKey", "baseUrl", "displayName"]), bad_field_value),
    st.builds(lambda v: {"openai": {"models": v}},
              st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=3),
                        st.dictionaries(st.text(max_size=3), st.text(max_size=3),
                                        min_size=1, max_size=2))),
)


def test_generated_invalid_toml_and_json_are_refused(world: World) -> None:
    samples: list[tuple[str, str]] = []

    @SETTINGS
    @given(invalid_toml)
    def toml_files(text: str) -> None:
        path = write_case(world, "moltis.toml", text)
        file_doors(world, path)
        if len(samples) < 6:
            samples.append(("toml", text))

    @SETTINGS
    @given(invalid_json)
    def json_files(text: str) -> None:
        file_doors(world, write_case(world, "moltis.json", text))
        keys_doors(world, write_case(world, "provider_keys.json", text))
        if len(samples) < 12:
            samples.append(("json", text))

    @SETTINGS
    @given(bad_keys_shape)
    def keys_shapes(value: Any) -> None:
        keys_doors(world, write_case(world, "provider_keys.json", json.dumps(value)))

    toml_files()
    json_files()
    keys_shapes()
    for kind, text in samples:  # the same files through the CLI
        case = world.case_dir()
        if kind == "toml":
            (case / "moltis.toml").write_text(text, encoding="utf-8", errors="surrogatepass")
            cli_case(world, "check --file invalid TOML", "check", "--file",
                     str(case / "moltis.toml"), mentions=(str(case / "moltis.toml"),))
        else:
            (case / "provider_keys.json").write_text(text, encoding="utf-8",
                                                     errors="surrogatepass")
        cli_case(world, f"migrate invalid {kind}", "--config-dir", str(case), "migrate",
                 mentions=(str(case),))
    run_cli_cases(world)


# -- generated: wrong types for typed fields ----------------------------------------

not_numeric = st.text(min_size=1, max_size=12).filter(
    lambda s: s.strip() and not s.strip().lstrip("+-").replace(".", "", 1).isdigit()
    and s.strip() not in ("true", "false") and s.strip()[:1] not in "[{"
    and not any(c in s for c in "\x00\n\r"))
a_list = st.lists(st.integers(), min_size=1, max_size=3)
a_table = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), min_size=1, max_size=2)
WRONG: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("server", "port"): st.one_of(not_numeric, st.floats(allow_nan=False, allow_infinity=False)
                                  .filter(lambda f: f != int(f)), st.booleans(), a_list,
                                  a_table, st.integers(max_value=-1),
                                  st.integers(min_value=65536, max_value=2**62)),
    ("tools", "agent_timeout_secs"): st.one_of(not_numeric, st.booleans(), a_list,
                                               st.integers(max_value=-1)),
    ("identity", "name"): st.one_of(st.integers(), st.booleans(), a_list, a_table),
    ("tools", "exec", "sandbox", "packages"): st.one_of(st.integers(), not_numeric, a_table,
                                                        st.lists(st.integers(), min_size=1)),
    ("chat", "auto_title"): st.one_of(not_numeric, st.integers(), a_list),
    ("server", "bind"): st.one_of(st.integers(), st.booleans(), a_list),
    ("config", "backend"): st.one_of(st.sampled_from(["mysql", "sqlite3", "FILE", "postgresql",
                                                      ""]), st.integers(), a_list),
}


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc: Any = value
    for key in reversed(path):
        doc = {key: doc}
    return doc


def _set_typed(path: tuple[str, ...], value: Any) -> Callable[[Any], None]:
    def fn(cfg: Any) -> None:
        target = cfg
        for key in path[:-1]:
            target = getattr(target, key)
        setattr(target, path[-1], value)
    return fn


def test_wrong_types_for_typed_fields_are_refused(world: World) -> None:
    store = world.store
    cli_values: list[tuple[str, str]] = []

    @SETTINGS
    @given(st.sampled_from(sorted(WRONG)).flatmap(lambda p: st.tuples(st.just(p), WRONG[p])))
    def wrong(item: tuple[tuple[str, ...], Any]) -> None:
        path, value = item
        name = ".".join(path)
        refused(world, lambda: store.ledger.edit({path: value}), ConfigValidationError, (name,))
        refused(world, lambda: run(store.update_raw(_set_typed(path, value))),
                ConfigValidationError, (name,))
        doc = run(store.raw_document())
        target = doc
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
        refused(world, lambda: run(store.save_raw(doc)), ConfigValidationError, (name,))
        case = write_case(world, "moltis.json", json.dumps(_nested(path, value)))
        file_doors(world, case, ConfigValidationError, unreadable=False)
        refused(world, lambda: migrate(store.ledger, config_file=case, keys_file=None,
                                       data_dir=world.data_dir), ConfigValidationError,
                (str(case), name))
        if not isinstance(value, str) and len(cli_values) < 8:
            cli_values.append((name, json.dumps(value)))
            if len(cli_values) <= 3:
                cli_case(world, f"migrate {name} = {value!r}", "--config-dir", str(case.parent),
                         "migrate", mentions=(str(case), name))

    wrong()
    for name, text in [*cli_values, ("server.port", "eighty"), ("chat.auto_title", "maybe")]:
        cli_case(world, f"set {name} {text}", "set", "--", name, text, mentions=(name,))
    run_cli_cases(world)


# -- generated: bad key paths and bad REFs ------------------------------------------

segment = st.from_regex(r"[a-z_][a-z0-9_-]{0,6}", fullmatch=True)
bad_path = st.one_of(
    st.just(""), st.just(" "), st.just("."), st.just(".."),
    st.builds(lambda a, b: f"{a}..{b}", segment, segment),
    st.builds(lambda a: f".{a}", segment), st.builds(lambda a: f"{a}.", segment),
    st.builds(lambda a: f'{a}."open', segment), st.builds(lambda a: f"{a}.'open", segment),
    st.builds(lambda a, c, b: f"{a}{c}{b}", segment,
              st.sampled_from(["$", "/", "=", "[", "]", "{", "*", "!", "@", ",", ";", "#"]),
              segment),
    st.lists(segment, min_size=65, max_size=70).map(".".join),
)


def test_bad_paths_are_refused(world: World) -> None:
    store = world.store
    samples: list[str] = []

    @SETTINGS
    @given(bad_path)
    def paths(text: str) -> None:
        refused(world, lambda: parse_path(text), InvalidPathError)
        refused(world, lambda: run(store.history(path=text)), InvalidPathError)
        if len(samples) < 10:
            samples.append(text)

    paths()
    # paths that parse but lead into a value that is not a table
    for text in ("server.port.x", "identity.name.first", "tools.agent_timeout_secs.a.b",
                 "providers.openai.models.x"):
        refused(world, lambda t=text: store.ledger.edit({parse_path(t): 1}),
                ConfigValidationError)
        cli_case(world, f"set {text}", "set", text, "1", mentions=(text.split(".")[0],))
    for text in samples:
        cli_case(world, f"set {text!r}", "set", text, "1", codes=(1, 2))
        cli_case(world, f"unset {text!r}", "unset", text, codes=(1, 2))
        cli_case(world, f"get {text!r}", "get", text, codes=(1, 2))
        if text:  # (`blame ""` is blame without a path filter)
            cli_case(world, f"blame {text!r}", "blame", text, codes=(1, 2))
    run_cli_cases(world)


def test_unknown_sections_for_set_are_kept_with_a_warning(world: World) -> None:
    """Documented behaviour: a key Moltis does not know is refused with suggestions
    (issue 15: a typo is not stored), and stored with --allow-unknown; the ledger then
    keeps it, says so, and `check` reports it (exit 1)."""
    res = run_cli("--db", str(world.db), "set", "nosuchsection.key", "1")
    assert res.code == 1 and "nosuchsection.key: unknown key" in res.err
    res = run_cli("--db", str(world.db), "set", "nosuchsection.key", "1", "--allow-unknown")
    assert res.code == 0 and "nosuchsection.key is not a key Moltis knows" in res.err
    res = run_cli("--db", str(world.db), "check")
    assert res.code == 1 and "nosuchsection" in res.out


bad_ref = st.one_of(
    st.integers(min_value=5, max_value=10**12).map(str),
    st.integers(min_value=5, max_value=10**6).map(lambda n: f"-{n}"),
    st.sampled_from(["the day before", "12:61", "2026-13-45", "2026-02-30T25:00:00Z", "1.5",
                     "0x10", "+3", "--3", "-", "head~1", "HEAD^", "١٢٣٤٥", "²", "-²", "1e3",
                     "nowish", "latest-1", "2026-11-24 09:00:00+99:00", "T", "1_0"]),
    st.text(min_size=1, max_size=10).filter(lambda s: not _valid_ref(s)),
)


def _valid_ref(text: str) -> bool:
    """A seq, -N, head or a time (ISO-8601 or words), whether in range or not."""
    from ledger.core.when import parse_when

    t = text.strip()
    digits = t[1:] if t[:1] == "-" else t
    if (digits.isascii() and digits.isdigit()) or t.lower() in ("head", "latest"):
        return True
    return parse_when(t) is not None


def test_bad_refs_are_refused(world: World) -> None:
    store = world.store
    samples: list[str] = []

    @SETTINGS
    @given(bad_ref)
    def refs(text: str) -> None:
        t = text.strip()
        if t.isascii() and t.lstrip("-").isdigit() and int(t.lstrip("-")) <= 4:
            return  # a seq inside the log (the world has 4 events)
        refused(world, lambda: store.resolve_ref(text), InvalidRefError)
        refused(world, lambda: run(store.load_raw_at(text)), InvalidRefError)
        refused(world, lambda: run(store.history(since=text)), InvalidRefError)
        if len(samples) < 8 and "\x00" not in text:
            samples.append(text)

    refs()
    for text in [*samples, "²", "the day before", "99999"]:
        cli_case(world, f"show --at {text!r}", "show", "--at", text, codes=(1, 2))
        cli_case(world, f"log --since {text!r}", "log", "--since", text, codes=(1, 2))
        cli_case(world, f"rollback --to {text!r}", "rollback", "--to", text, codes=(1, 2))
    run_cli_cases(world)


# -- absurd sizes -------------------------------------------------------------------


def _absurd_values(world: World) -> None:
    store = world.store
    big = "x" * BIG
    refused(world, lambda: store.ledger.edit({("identity", "name"): big}),
            ConfigValidationError, ("identity.name",))
    refused(world, lambda: run(store.update_raw(_set_typed(("identity", "name"), big))),
            ConfigValidationError, ("identity.name",))
    refused(world, lambda: run(store.providers.set("openai", api_key=big)),
            ConfigValidationError, ("apiKey",))
    refused(world, lambda: store.ledger.edit({("torture", "k" * BIG): 1}),
            ConfigValidationError)
    refused(world, lambda: run(store.providers.set("n" * BIG, api_key="sk-x")), InputError)
    # 50 MB in pieces each under the per-value limit: one event that size is absurd too
    pieces = [f"{i:04d}" + "y" * 999_000 for i in range(52)]
    packages = ("tools", "exec", "sandbox", "packages")
    refused(world, lambda: store.ledger.edit({packages: pieces}), InputError)
    refused(world, lambda: run(store.update_raw(_set_typed(packages, pieces))), InputError)
    conf = write_case(world, "moltis.toml", '[identity]\nname = "Atlas"\n')
    refused(world, lambda: run(FileConfigStore(conf).update_raw(_set_typed(packages, pieces))),
            InputError, (str(conf),))
    keys = write_case(world, "provider_keys.json", "{}")
    refused(world, lambda: run(FileProviderStore(keys).set(
        "openai", models=[f"m{i}" + "z" * 999_000 for i in range(20)])), InputError,
        (str(keys),))


def test_absurd_sizes_are_refused(world: World) -> None:
    store = world.store
    _absurd_values(world)
    # 10,000-deep nesting: TOML arrays, inline tables, tables and dotted keys; JSON
    deep_toml = {
        "array": "a = " + "[" * DEEP + "]" * DEEP + "\n",
        "inline": "a = " + "{b = " * DEEP + "1" + "}" * DEEP + "\n",
        "tables": "[" + ".".join(["t"] * DEEP) + "]\nx = 1\n",
        "dotted": ".".join(["k"] * DEEP) + " = 1\n",
    }
    for text in deep_toml.values():
        path = write_case(world, "moltis.toml", text)
        file_doors(world, path)
        cli_case(world, "check --file deep TOML", "check", "--file", str(path),
                 mentions=(str(path),))
    deep_json = ['{"a": ' + "[" * DEEP + "]" * DEEP + "}",
                 '{"a": ' + '{"b": ' * DEEP + "1" + "}" * DEEP + "}"]
    for text in deep_json:
        file_doors(world, write_case(world, "moltis.json", text))
        keys = write_case(world, "provider_keys.json", text)
        keys_doors(world, keys)
        cli_case(world, "migrate deep provider_keys.json", "--config-dir", str(keys.parent),
                 "migrate", mentions=(str(keys),))
    deep_value: Any = 1
    for _ in range(DEEP):
        deep_value = {"d": deep_value}
    refused(world, lambda: store.ledger.edit({("torture", "deep"): deep_value}),
            ConfigValidationError)
    refused(world, lambda: run(store.save_raw({"torture": deep_value})), ConfigValidationError)
    cli_case(world, "set a 10,000-deep JSON array", "set", "tools.exec.sandbox.packages",
             "[" * DEEP + "]" * DEEP, mentions=("tools.exec.sandbox.packages",))
    cli_case(world, "set a 10,000-deep JSON object", "set", "tools.exec.sandbox.packages",
             '{"a":' * DEEP + "1" + "}" * DEEP, mentions=("tools.exec.sandbox.packages",))
    # a 50 MB config file and key file
    huge = write_case(world, "moltis.toml",
                      "# padding\n" * (BIG // 10) + '[identity]\nname = "Atlas"\n')
    file_doors(world, huge, ParseError)
    cli_case(world, "check --file 50 MB", "check", "--file", str(huge), mentions=(str(huge),))
    cli_case(world, "migrate 50 MB", "--config-dir", str(huge.parent), "migrate",
             mentions=(str(huge),))
    keys = write_case(world, "provider_keys.json",
                      '{"openai": {"apiKey": "' + "k" * BIG + '"}}')
    keys_doors(world, keys)
    cli_case(world, "set a 50 MB value from stdin", "set", "identity.name", "-",
             stdin=b"v" * BIG + b"\n", mentions=("identity.name",))
    run_cli_cases(world)
    for case in world.cases.iterdir():  # the 50 MB files: free the memory-backed space
        shutil.rmtree(case)


# -- non-UTF-8, environment, key files, databases ----------------------------------


def test_non_utf8_bytes_are_refused(world: World) -> None:
    store = world.store
    for name, data in (("moltis.toml", b'[identity]\nname = "\xff\xfe"\n'),
                       ("moltis.toml", b"\xef\xbb\xbf\xc3\x28 = 1\n"),
                       ("moltis.json", b'{"identity": {"name": "\xc0\xaf"}}'),
                       ("moltis.toml", b"[server]\nport = 1\n\x80")):
        path = write_case(world, name, data)
        file_doors(world, path, ParseError)
        cli_case(world, f"check --file non-UTF-8 {name}", "check", "--file", str(path),
                 mentions=(str(path),))
    for data in (b'{"openai": {"apiKey": "\xff"}}', b"\xfe\xff{}", b'{"\xc3": {}}'):
        keys = write_case(world, "provider_keys.json", data)
        keys_doors(world, keys)
        cli_case(world, "migrate non-UTF-8 provider_keys.json", "--config-dir", str(keys.parent),
                 "migrate", mentions=(str(keys),))
    lone = "\udcff"  # what a non-UTF-8 argument or environment byte becomes in Python
    refused(world, lambda: store.ledger.edit({("identity", "name"): f"a{lone}"}),
            ConfigValidationError, ("identity.name",))
    refused(world, lambda: store.ledger.edit({("torture", f"k{lone}"): 1}), ConfigValidationError)
    refused(world, lambda: store.ledger.edit({("server", "port"): 9}, actor=f"a{lone}"),
            InputError, ("actor",))
    refused(world, lambda: store.ledger.edit({("server", "port"): 9}, reason=f"r{lone}"),
            InputError, ("reason",))
    refused(world, lambda: run(store.providers.set(f"p{lone}", api_key="k")), InputError)
    refused(world, lambda: run(store.save_raw({"torture": {f"k{lone}": 1}})),
            ConfigValidationError)
    bad = os.fsdecode(b"\xff\xfe")
    cli_case(world, "set non-UTF-8 value", "set", "identity.name", bad,
             mentions=("identity.name",))
    cli_case(world, "set non-UTF-8 value on stdin", "set", "identity.name", "-",
             stdin=b"\xff\xfe\n", mentions=("identity.name",))
    cli_case(world, "set non-UTF-8 path", "set", bad, "1", mentions=("key path",))
    cli_case(world, "set a quoted lone surrogate key", "set", 'torture."\\ud800"', "1")
    cli_case(world, "--actor non-UTF-8", "--actor", bad, "set", "server.port", "9",
             mentions=("actor",))
    cli_case(world, "--reason non-UTF-8", "--reason", bad, "set", "server.port", "9",
             mentions=("reason",))
    cli_case(world, "providers set non-UTF-8 name", "providers", "set", bad, "--api-key", "k",
             mentions=("provider name",))
    run_cli_cases(world)


def test_bad_environment_is_refused_or_ignored_with_a_reason(world: World) -> None:
    store = world.store
    port = run(store.load_raw()).server.port
    overrides = [("MOLTIS_SERVER__PORT", "eighty"), ("MOLTIS_TOOLS__AGENT_TIMEOUT_SECS", "-5"),
                 ("MOLTIS_SERVER__PORT__X", "1"), ("MOLTIS_CHAT__AUTO_TITLE", "[1, 2"),
                 ("MOLTIS___", "1"), ("MOLTIS_NOSUCH__KEY", "1"),
                 ("MOLTIS_SERVER__PORT2", "\udcff"), ("MOLTIS_SERVER__PORT", "9" * 5000),
                 ("MOLTIS_TOOLS__EXEC__SANDBOX__PACKAGES", "[" * DEEP + "]" * DEEP)]
    from ledger.typed.env_overrides import parse_env_overrides

    for var, value in overrides:
        before = world.snapshot()
        env = {var: value}
        good, ignored = parse_env_overrides(env)
        assert not good and [i.variable for i in ignored] == [var], (var, good, ignored)
        effective = run(store.load_effective(env=env))
        assert effective.server.port == port
        run(store.source_metadata(env=env))
        assert world.snapshot() == before
        stats.add("bad_inputs")
        if "\udcff" not in value and len(value) < 100_000:
            res = run_cli("--db", str(world.db), "get", "server.port", "--effective",
                          env={**os.environ, var: value})
            assert res.code == 0 and res.out.strip() == str(port), res
            assert var in res.err, f"{var}: the ignored override is not reported: {res.err}"
            stats.add("bad_inputs")
    # the library's own variables: refused with the variable named
    from ledger.ops.open_store import open_store

    refused(world, lambda: open_store(env={**os.environ, "MOLTIS_CONFIG_BACKEND": "mysql"}),
            InputError, ("MOLTIS_CONFIG_BACKEND",))
    refused(world, lambda: open_store(backend="postgres", env={
        k: v for k, v in os.environ.items() if k != "MOLTIS_CONFIG_DSN"}), InputError)
    bad_key = KeySource(env={"MOLTIS_LEDGER_KEY": "not-a-key"})
    other = SqliteConfigStore(world.db, keys=bad_key)
    refused(world, lambda: run(other.providers.set("openai", api_key="sk-new")), SecretKeyError,
            ("MOLTIS_LEDGER_KEY",))
    other.ledger.close()
    wrong_key = KeySource(env={"MOLTIS_LEDGER_KEY": hashlib.blake2b(b"wrong").hexdigest()[:64]})
    other = SqliteConfigStore(world.db, keys=wrong_key)
    refused(world, lambda: run(other.providers.set("openai", api_key="sk-new")), SecretKeyError)
    other.ledger.close()
    cli_case(world, "MOLTIS_LEDGER_KEY garbage", "set", "providers.openai.api_key", "-",
             stdin=b"sk-new\n", env={"MOLTIS_LEDGER_KEY": "not-a-key"},
             mentions=("MOLTIS_LEDGER_KEY",))
    cli_case(world, "MOLTIS_LEDGER_ACTOR two lines", "set", "server.port", "9",
             env={"MOLTIS_LEDGER_ACTOR": "a\nb"}, mentions=("MOLTIS_LEDGER_ACTOR",))
    cli_case(world, "MOLTIS_LEDGER_ACTOR too long", "set", "server.port", "9",
             env={"MOLTIS_LEDGER_ACTOR": "a" * 5000}, mentions=("MOLTIS_LEDGER_ACTOR",))
    run_cli_cases(world)
    res = run_cli("show", env={**os.environ, "MOLTIS_CONFIG_BACKEND": "mysql"})
    assert res.code == 1 and "MOLTIS_CONFIG_BACKEND" in res.err and "Traceback" not in res.err
    stats.add("bad_inputs")


def test_corrupt_key_file_is_refused_and_the_gateway_falls_back_read_only(
        world: World) -> None:
    from ledger.ops.open_store import open_store

    keys = world.config_dir / "provider_keys.json"
    keys.write_bytes(b'{"openai": {"apiKey": "sk-a"}, "broken": ')
    keys_doors(world, keys)
    cli_case(world, "migrate with a corrupt provider_keys.json", "migrate",
             mentions=(str(keys),))
    run_cli_cases(world)
    # a first start on a corrupt key file: the gateway still starts, read-only, saying why
    fresh = world.data_dir / "fresh"
    before = world.snapshot()
    store = open_store(backend="sqlite", data_dir=fresh)
    assert getattr(store, "read_only", False) and "provider_keys.json" in str(
        store.read_only_reason)
    refused(world, lambda: run(store.update_raw(_set_typed(("server", "port"), 1))),
            StoreError, ("provider_keys.json",))
    assert world.snapshot() == before
    # nothing imported (a failed first import leaves no ledger file at all)
    assert not (fresh / "moltis.db").exists() or head_of(fresh / "moltis.db")[0] == 0


def test_foreign_databases_are_refused_untouched(world: World) -> None:
    run(world.store.update_raw(_set_typed(("server", "port"), 9000)))
    world.store.ledger.backend.checkpoint()
    real = world.db.read_bytes()
    newer = write_case(world, "newer.db", real)
    conn = apsw.Connection(str(newer))
    conn.execute("UPDATE ledger_meta SET value = ? WHERE key = 'format_version'",
                 (str(FORMAT_VERSION + 1),))
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{newer}{suffix}").unlink(missing_ok=True)
    junk = [write_case(world, "text.db", b"hello, this is not a database\n" * 100),
            write_case(world, "random.db", os.urandom(8192)),
            write_case(world, "header.db", b"SQLite format 3\x00" + os.urandom(4080)),
            write_case(world, "moltis.toml.db", CONFIG_TOML.encode())]
    truncated = [write_case(world, f"cut{n}.db", real[:n])
                 for n in (100, 4096, len(real) // 2)]
    for path in [newer, *junk]:
        data = path.read_bytes()
        errors = FormatVersionError if path is newer else StoreError
        mentions = (str(path), "newer version") if path is newer else (str(path),)
        refused(world, lambda p=path: SqliteConfigStore(p), errors, mentions)
        refused(world, lambda p=path: SqliteConfigStore(p, read_only=True), errors, mentions)
        for args in (("verify",), ("show",), ("set", "server.port", "1"), ("log",)):
            world.cli_cases.append((f"{path.name}: {args[0]}", {
                "args": ("--db", str(path), *args), "stdin": None, "env": None, "codes": (1,),
                "mentions": mentions}))
        run_cli_cases(world)
        assert path.read_bytes() == data, f"{path.name} was written to"
    for path in truncated:
        data = path.read_bytes()

        def through_library(p: Path = path) -> None:
            store = SqliteConfigStore(p, read_only=True)
            try:
                report = store.ledger.verify()
                if not report.ok:
                    from ledger.errors import VerificationError

                    raise VerificationError(str(report.problem), report.first_bad_seq)
                store.ledger.head_state()
                run(store.load_raw())
            finally:
                store.ledger.close()

        refused(world, through_library, (StoreError, VerificationError))
        for args in (("verify",), ("show",), ("log",)):
            world.cli_cases.append((f"{path.name}: {args[0]}", {
                "args": ("--db", str(path), *args), "stdin": None, "env": None,
                "codes": (1, 3), "mentions": ()}))
        run_cli_cases(world)
        assert path.read_bytes() == data, f"{path.name} was written to by a reader"
