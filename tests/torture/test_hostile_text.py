"""Issue 14 in the torture suite: hostile text in every text field, and symlink traps at
every write target outside backup/restore.

1. Hypothesis puts control characters (C0, DEL, C1), bidi overrides and separators
   (and NUL, which the input check may refuse) into every text a person can give: a
   reason, an actor, a config value, an unknown key's name, a provider's name, display
   name and model. Each is stored as given (or refused with a typed error, nothing
   written), then every human output that shows it (log, blame, watch, diff, get,
   show, providers, errors) must carry no raw unsafe character, and every `--json`
   output must parse and give the value back exactly. Old data holding NUL (written
   before the input check) is rendered visibly as `\\x00`.
2. A link to a victim file is planted at every name the project writes (export files,
   a bundle and its temporary name, the key file and its staged rotation copy, lock
   files, the file store's files); each write must leave the victim untouched and
   either refuse naming the path or replace the link with a private regular file.

The CLI runs in-process; counts go to the torture summary line.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.cli.app import run as cli_run
from ledger.core.escape import UNSAFE_CHARS
from ledger.core.events import KIND_CHANGE, Change, ChangePayload, encode_payload
from ledger.errors import LedgerError, UnsafePathError
from ledger.ops.open_store import open_ledger
from tests.conftest import run
from tests.torture import stats

pytestmark = pytest.mark.torture

EXAMPLES = int(os.environ.get("LEDGER_TORTURE_EXAMPLES", "40"))
SETTINGS = settings(max_examples=max(5, EXAMPLES // 4), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
HOSTILE = [*"\x1b\x07\x08\r\n\t\x7f\x9b\x85\u202e\u202a\u2066\u200f\u2028", "\x1b]0;x\x07",
           "\x1b[2J", "\x1b[1A\x1b[2K"]
RAW = set(UNSAFE_CHARS)


def hostile_text(min_size: int = 1) -> st.SearchStrategy[str]:
    """Ordinary text with at least one unsafe character or sequence spliced in."""
    plain = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",),
                                  exclude_characters="\x00" + UNSAFE_CHARS), max_size=12)
    return st.builds(lambda a, bad, b: a + bad + b, plain, st.sampled_from(HOSTILE),
                     plain).filter(lambda s: len(s) >= min_size and s.strip() != "")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_no_raw(text: str, where: str) -> None:
    bad = {c for c in text if c in RAW and c not in "\n"}
    assert not bad, f"{where}: raw {sorted(map(repr, bad))} reached the terminal"
    stats.add("hostile_outputs")


HUMAN_READS: list[tuple[str, ...]] = [
    ("log",), ("log", "--limit", "3"), ("blame",), ("diff", "0"), ("show",),
    ("show", "--effective"), ("providers", "list"), ("providers", "effective"),
    ("watch", "--after", "0", "--count", "1"),
]


def every_output(capsys: pytest.CaptureFixture[str], extra: list[tuple[str, ...]]) -> None:
    for args in [*HUMAN_READS, *extra]:
        code, out, err = cli(capsys, *args)
        assert code in (0, 1, 2), (args, err)  # 2: click usage (an argument like -x)
        assert "Traceback" not in err and "unexpected" not in err, (args, err)
        # human output: one line per event in watch, no raw unsafe character anywhere
        assert_no_raw(out.replace("\n", "") + err.replace("\n", ""), " ".join(args))
        if args[0] == "watch":
            assert len(out.splitlines()) == 1, out
        code, out, err = cli(capsys, "--json", *args)
        assert code in (0, 1, 2), (args, err)  # 2: click usage (an argument like -x)
        assert_no_raw(out.replace("\n", ""), "--json " + " ".join(args))
        for line in out.splitlines() if args[0] == "watch" else [out]:
            if line.strip():
                json.loads(line)  # still valid JSON


@SETTINGS
@given(reason=hostile_text(), actor=hostile_text(), value=hostile_text(),
       key=hostile_text(), provider=hostile_text(), display=hostile_text())
def test_hostile_text_in_every_field_never_reaches_a_terminal_raw(
        capsys: pytest.CaptureFixture[str], reason: str, actor: str, value: str, key: str,
        provider: str, display: str) -> None:
    stats.add("hostile_texts", 6)
    attempts: list[tuple[str, ...]] = [
        ("set", "identity.name", value, "--reason", reason),
        ("--actor", actor, "set", "server.port", "8081"),
        ("set", f'mystery."{key}"' if '"' not in key and "\\" not in key else "mystery.k",
         "1", "--string", "--allow-unknown"),
        ("providers", "set", provider.replace("\n", " ") or "p", "--display-name", display,
         "--models", value),
    ]
    for args in attempts:
        code, out, err = cli(capsys, *args)
        # stored as given, or refused with a clear error (never a crash)
        assert code in (0, 1, 2), (args, err)  # 2: click usage (an argument like -x)
        assert "Traceback" not in err and "unexpected" not in err, (args, err)
        assert_no_raw(out.replace("\n", "") + err.replace("\n", ""), " ".join(args[:2]))
    every_output(capsys, [("get", "identity.name"), ("get", "identity.name", "--effective"),
                          ("get", "no.such", "--at", reason[:20] or "x")])
    code, out, _ = cli(capsys, "--json", "log", "--limit", "1")
    assert code == 0


def test_old_data_with_nul_and_controls_is_rendered_visibly(capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    """Data written before the input check (or by another tool) may hold NUL: it is
    shown as \\x00, never passed through."""
    cli(capsys, "set", "server.port", "8080")
    store = open_ledger(str(Path(os.environ["MOLTIS_DATA_DIR"]) / "moltis.db"))
    ledger = store.ledger
    payload = encode_payload(ChangePayload(changes=[
        Change(op="set", path=("identity", "name"), value="a\x00b\x1b[2Jc\u202ed"),
        Change(op="set", path=("mystery", "k\x00ey"), value="v\x00"),
    ]))
    with ledger.backend.write() as txn:
        ledger._record(txn, txn.head(), KIND_CHANGE, payload, "old\x00actor",
                       "old\x00reason\x1b[2K", "import")
    ledger.reset_caches()
    run(store.close())
    for args in (("log",), ("blame",), ("show",), ("get", "identity.name"), ("diff", "1"),
                 ("watch", "--after", "1", "--count", "1")):
        code, out, err = cli(capsys, *args)
        assert code == 0, (args, err)
        assert "\x00" not in out + err and "\x1b" not in out + err, args
        assert "\\x00" in out or "\\u0000" in out, (args, out)  # quoted literals: JSON form
        stats.add("hostile_outputs")


# ---------------------------------------------------------------------------------
# symlink traps


def _victim(root: Path) -> Path:
    victim = root / "victim.txt"
    victim.write_text("precious\n")
    return victim


def _private_regular(path: Path) -> bool:
    st_ = os.lstat(path)
    return stat.S_ISREG(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o600


def _trap(name: str, link: Path, victim: Path, write: Callable[[], Any],
          *, replaced_ok: bool) -> None:
    """Plant `link -> victim`, run `write`: the victim stays as it was, and the write
    either refused naming the link or replaced it with a private regular file."""
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(victim)
    before = victim.read_bytes()
    refusal: BaseException | None = None
    try:
        write()
    except (LedgerError, SystemExit) as err:
        refusal = err
    if isinstance(refusal, UnsafePathError):  # names the path
        assert str(link.parent) in str(refusal) or str(link) in str(refusal), (name, refusal)
    if refusal is None:
        assert replaced_ok, f"{name}: the write went through a planted link"
        assert not link.is_symlink(), name
        assert not link.exists() or _private_regular(link), name  # moved on, or private
    assert victim.read_bytes() == before, f"{name}: the victim was overwritten"
    stats.add("symlink_traps")


def test_symlink_traps_at_every_write_target(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from ledger.engine.vault import KeySource
    from ledger.files.safe_io import locked
    from ledger.ops.keys import rotate_key
    from ledger.stores.file_providers import FileProviderStore
    from ledger.stores.file_store import FileConfigStore

    victim = _victim(tmp_path)
    code, _, err = cli(capsys, "set", "providers.openai.api_key", "sk-trap-0001")
    assert code == 0, err

    def cli_ok(*args: str) -> Callable[[], None]:
        def call() -> None:
            code, _, err = cli(capsys, *args)
            if code != 0:
                raise UnsafePathError(err)
        return call

    export = tmp_path / "export"
    export.mkdir(mode=0o700)
    for name in ("moltis.toml", "provider_keys.json"):
        _trap(f"export {name}", export / name, victim,
              cli_ok("export", "-o", str(export), "--reveal-secrets"), replaced_ok=True)
    _trap("export moltis.json", export / "moltis.json", victim,
          cli_ok("export", "-o", str(export), "--format", "json", "--masked"),
          replaced_ok=True)
    bundle = tmp_path / "b.bundle"
    _trap("bundle", bundle, victim, cli_ok("bundle", "-o", str(bundle), "--with-secrets"),
          replaced_ok=True)
    bundle.unlink()
    _trap("bundle temp", tmp_path / f".b.bundle.{os.getpid()}.tmp", victim,
          cli_ok("bundle", "-o", str(bundle)), replaced_ok=False)

    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(mode=0o700)
    _trap("key file", keys_dir / "ledger.key", victim,
          lambda: KeySource(key_file=keys_dir / "ledger.key", env={}).load(create=True),
          replaced_ok=False)
    store = open_ledger(str(tmp_path / "rot.db"), keys=KeySource(
        key_file=keys_dir / "k2.key", env={}))
    store.ledger.edit({("providers", "openai", "api_key"): "sk-trap-0002"})
    _trap("staged rotation key", keys_dir / "k2.key.new", victim,
          lambda: rotate_key(store.ledger), replaced_ok=True)
    assert _private_regular(keys_dir / "k2.key")
    run(store.close())

    conf = tmp_path / "conf"
    conf.mkdir(mode=0o700)
    for lock in ("moltis.toml.lock", "provider_keys.json.lock"):
        def take(lock: str = lock) -> None:
            with locked(conf / lock.removesuffix(".lock"), wait=False):
                pass
        _trap(f"lock {lock}", conf / lock, victim, take, replaced_ok=False)
        (conf / lock).unlink()
    file_store = FileConfigStore(conf / "moltis.toml")
    # the file store's own temp names are random; its lock is the fixed name
    _trap("file store lock", conf / "moltis.toml.lock", victim,
          lambda: run(file_store.update_raw(lambda c: setattr(c.server, "port", 9))),
          replaced_ok=False)
    (conf / "moltis.toml.lock").unlink()
    providers = FileProviderStore(conf / "provider_keys.json")
    _trap("key store lock", conf / "provider_keys.json.lock", victim,
          lambda: run(providers.set("openai", api_key="sk-trap-0003")), replaced_ok=False)

    shared = tmp_path / "open-to-all"
    shared.mkdir()
    shared.chmod(0o777)
    code, _, err = cli(capsys, "export", "-o", str(shared), "--masked")
    assert code == 1 and "world-writable" in err and str(shared) in err
    stats.add("symlink_traps")
