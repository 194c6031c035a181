"""Review r15: what is read back from disk or written to disk around transfers (bundles,
backups and restore, migration backups, the ledger key, exports), driven with CLI
processes on real files.

Each test is a finding, marked xfail(strict=True) until it is fixed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ledger.core.chain import GENESIS, link
from tests.migrated_site import cli_here as _cli
from tests.test_review_r11 import _env, _site

SECRET = "sk-r15-NOT-REAL-0123456789abcdef"
TOML = f'[server]\nport = 13131\n\n[providers.openai]\napi_key = "{SECRET}"\n'
PLAIN_TOML = "[server]\nport = 13131\n"


def _written(env: dict[str, str], toml: str = TOML) -> Path:
    """A migrated site (its own key file) with one more event: server.port = 14000."""
    done = _cli(env, "set", "server.port", "14000")
    assert done.returncode == 0, done.stderr
    return Path(env["MOLTIS_DATA_DIR"]) / "moltis.db"


def _bundle(env: dict[str, str], target: Path, *extra: str) -> list[str]:
    done = _cli(env, "bundle", "-o", str(target), *extra)
    assert done.returncode == 0, done.stderr
    return target.read_text(encoding="utf-8").split("\n")[:-1]


def _rechain(lines: list[str]) -> list[str]:
    """What anyone without the key can do to a bundle: change events and link the
    chain again (each hash, the header's head); other lines kept as they are."""
    header, prev, out, rest = json.loads(lines[0]), GENESIS, [], []
    for line in lines[1:]:
        item = json.loads(line)
        if "seq" not in item:
            rest.append(line)
            continue
        item["prev_hash"] = prev.hex()
        prev = link(prev, item["seq"], item["ts"], item["actor"], item["reason"],
                    item["source"], item["kind"], item["payload"].encode())
        item["hash"] = prev.hex()
        out.append(json.dumps(item))
    header["head"] = prev.hex()
    return [json.dumps(header), *out, *rest]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _empty_site(root: Path, key_from: Path | None = None) -> dict[str, str]:
    """A second installation under `root`: no ledger yet; the key file copied from
    `key_from` (the same ledger key) or none (a key of its own on first use)."""
    root.mkdir()
    env = _site(root, toml=PLAIN_TOML, migrate=False)
    if key_from is not None:
        (root / "ledger.key").write_bytes(key_from.read_bytes())
        (root / "ledger.key").chmod(0o600)
    return env


# ---------------------------------------------------------------------------------
# bundles


def test_import_bundle_refuses_a_bundle_whose_head_mac_disowns_its_head(tmp_path: Path) -> None:
    """A bundle (`bundle --with-secrets`) of a ledger at seq 2 (server.port = 14000) is
    edited by hand: event 2 now sets server.port = 666, the chain linked again (no key
    needed), the meta line with the head MAC and signature for the real event 2 kept.
    `import-bundle` into an empty ledger under the same key (a second host) exits 0,
    "ok: ... signed head: seq 3"; `get server.port` prints 666 and `verify` passes: the
    import's own event 3 was MAC'd and signed, so the forged event 2 is now vouched for
    by the key. `Ledger.fork_history` (engine/ledger.py) takes the moved head MAC as
    vouching for the head when its *seq* equals the head's, without comparing the
    hash; and `import_bundle` (ops/export.py) does not run the refusal that `restore`
    runs (`_refuse_disowned`) on the staged copy. It should be refused (exit 3, nothing
    imported), as `restore` refuses such a backup, or at least stay unsigned (exit 3),
    so every keyed read refuses it until `sign-head --adopt`."""
    a = tmp_path / "a"
    a.mkdir()
    env = _site(a, toml=TOML)
    _written(env)
    lines = _bundle(env, tmp_path / "full.bundle", "--with-secrets")
    event = json.loads(lines[2])
    assert '"value":14000' in event["payload"]
    event["payload"] = event["payload"].replace('"value":14000', '"value":666')
    lines[2] = json.dumps(event)
    forged = _write(tmp_path / "forged.bundle", _rechain(lines))
    b = _empty_site(tmp_path / "b", key_from=a / "ledger.key")
    imported = _cli(b, "import-bundle", str(forged))
    got = _cli(b, "get", "server.port")
    verified = _cli(b, "verify")
    assert imported.returncode == 3, (imported.stdout, imported.stderr)
    assert got.stdout.strip() != "666", got.stdout
    # refused outright (nothing imported), or imported unsigned (every keyed read refuses)
    assert "0 event(s)" in verified.stdout or verified.returncode == 3, verified.stdout


def test_import_bundle_of_another_installation_can_be_adopted(tmp_path: Path) -> None:
    """A ledger holding no secret (server.port only) is bundled on host A and imported
    into an empty ledger on host B, which has a ledger key of its own. docs/cli.md
    (`sign-head`): "a bundle from another key ... is restored as asked but stays
    unsigned, and restore/import-bundle exit 3 with the reason and the repair: check
    it, then sign-head --adopt". The import exits 3, but every read then exits 3 ("the
    stored head MAC (for event 2) does not check with this ledger key: it was changed
    or forged"), `verify` fails ("the head is signed by ed25519:<A's>, not by this
    ledger key: someone re-signed a rewritten log"), and `sign-head --adopt` refuses
    because verify fails: the imported ledger can never be read. The bundle's head MAC
    and signature rows, made under another key, are copied in (`_checked_meta`) and
    left in place when they do not check under the key at hand (`stage_copy` /
    `fork_history` move only a MAC that checks). The import should leave the head
    unsigned (no foreign MAC/signature rows), so that `sign-head --adopt` vouches for
    it and reads serve it."""
    a = tmp_path / "a"
    a.mkdir()
    env = _site(a, toml=PLAIN_TOML)
    _written(env)
    bundle = tmp_path / "a.bundle"
    _bundle(env, bundle)
    b = _empty_site(tmp_path / "b")
    imported = _cli(b, "import-bundle", str(bundle))
    assert imported.returncode == 3, imported.stderr
    adopted = _cli(b, "sign-head", "--adopt")
    assert adopted.returncode == 0, adopted.stderr
    got = _cli(b, "get", "server.port")
    assert (got.returncode, got.stdout.strip()) == (0, "14000"), got.stderr


def test_import_bundle_refuses_another_keys_secrets_without_a_key_check_line(
        tmp_path: Path) -> None:
    """A bundle `--with-secrets` from host A (its provider api_key sealed with A's key)
    whose `{"meta": {"key_check": …}}` line is missing (hand-edited, or written by a tool
    that kept only events and secrets) is imported on host B, which has another key.
    docs/cli.md: a bundle with "secrets sealed with another ledger key than the one at
    hand" is refused, exit 1, and "creates no database"; `restore` refuses the same
    backup without its key_check row (ops/backup_reseal.py `_check_unkeyed`: sealed
    secrets that no key at hand opens). import-bundle creates moltis.db and loads the
    secret rows; after `sign-head --adopt`, the next write stores B's key_check over a
    ledger whose secret opens only with A's key (`export --reveal-secrets` then fails:
    "does not open with the ledger key"). `check_bundle`/`_same_key` (ops/export.py)
    check the key only when the bundle carries a key_check line."""
    a = tmp_path / "a"
    a.mkdir()
    env = _site(a, toml=TOML)
    _written(env)
    lines = _bundle(env, tmp_path / "full.bundle", "--with-secrets")
    kept = [line for line in lines if '"key_check"' not in line]
    assert len(kept) == len(lines) - 1
    bundle = _write(tmp_path / "nocheck.bundle", kept)
    b = _empty_site(tmp_path / "b")
    imported = _cli(b, "import-bundle", str(bundle))
    assert imported.returncode == 1, (imported.returncode, imported.stderr)
    assert not (tmp_path / "b" / "data" / "moltis.db").exists()


@pytest.mark.parametrize("target", ["data/moltis.db", "ledger.key"])
def test_bundle_does_not_replace_the_live_ledger_or_its_key(tmp_path: Path,
                                                          target: str) -> None:
    """`moltis-ledger bundle -o ~/.moltis/moltis.db` (a slip of the operator's hand, or
    a script given the wrong variable) renames the bundle over the live ledger: exit 0,
    "wrote …/moltis.db: 2 event(s)", and every command after it says "not a SQLite
    database" (the secrets, not in a bundle without --with-secrets, are gone).
    `bundle -o <config dir>/ledger.key` replaces the ledger key the same way: exit 0,
    and every secret is lost for good ("the ledger key must be 32 bytes"). `backup -o`
    never overwrites FILE, and `export -o` refuses the live config directory; `bundle`
    (cli/admin_cmds.py `bundle`: `tmp.replace(path)`) only refuses a FIFO, device or
    directory. It should refuse (exit non-zero, the file unchanged) at least the
    ledger's own files and the key file, if not every existing file."""
    env = _site(tmp_path, toml=TOML)
    _written(env)
    path = tmp_path / target
    before = path.read_bytes()
    done = _cli(env, "bundle", "-o", str(path))
    assert done.returncode != 0, done.stdout
    assert path.read_bytes() == before
    got = _cli(env, "get", "server.port")
    assert (got.returncode, got.stdout.strip()) == (0, "14000"), got.stderr


def test_migrate_refuses_a_world_writable_backups_directory(tmp_path: Path) -> None:
    """`<data dir>/backups` exists with mode 0777 (no sticky bit). `moltis-ledger backup`
    refuses it ("refusing to write here: the directory is world-writable ... anyone
    could plant a link in it"), as docs/cli.md promises for every file written. But
    `migrate` creates its migrate-<time>/ folder there and writes the sealed copy of
    moltis.toml and the manifest into it (exit 0), then masks the file's secret and
    retires provider_keys.json trusting that folder, which any local user can rename
    away or swap for a link to a folder of their own between the mkdir and the writes.
    `backup_files` (ops/migrate.py) calls `ensure_private_dir(root)` and `mkdir`, never
    `check_directory`. It should refuse (exit non-zero, naming the directory) before
    importing anything, as `backup` does."""
    (tmp_path / "data" / "backups").mkdir(parents=True)
    (tmp_path / "data" / "backups").chmod(0o777)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "moltis.toml").write_text(TOML, encoding="utf-8")
    env = _env(tmp_path)
    done = _cli(env, "migrate")
    assert done.returncode != 0, done.stdout
    assert "backups" in done.stderr, done.stderr
    assert list((tmp_path / "data" / "backups").iterdir()) == []


def test_the_head_mirror_is_not_written_into_another_users_file(tmp_path: Path) -> None:
    """The data dir is world-writable without the sticky bit (a shared volume), and
    another user (uid 1234) planted `ledger-head.0.json` and `.1.json`, files of their
    own, mode 0644. After `moltis-ledger set server.port 15000` (exit 0) both files,
    still owned by uid 1234, hold the head mirror: the configuration in clear and the
    sealed secret values, for their owner to read (chmod is theirs). docs/cli.md: every
    file written, "the head mirror and its mark beside the key" named, is created in a
    directory "neither owned by another user nor world-writable without the sticky
    bit", 0600 from the first byte. The head mark refuses such a directory
    (engine/head_mark.py checks it); `overwrite_private` (files/safe_io.py), which
    `write_mirror` (ops/mirror.py) uses, opens the existing file in place with no
    `check_directory` and no owner check. The mirror should not be written there (the
    commit may stand, with a warning, as for the head mark)."""
    if os.geteuid() != 0:
        pytest.skip("planting another user's file needs root")
    env = _site(tmp_path, toml=TOML)
    data = tmp_path / "data"
    data.chmod(0o777)
    planted = b"the other user's file\n"
    for slot in (0, 1):
        path = data / f"ledger-head.{slot}.json"
        path.unlink(missing_ok=True)
        path.write_bytes(planted)
        path.chmod(0o644)
        os.chown(path, 1234, 1234)
    done = _cli(env, "set", "server.port", "15000")
    assert done.returncode == 0, done.stderr
    for slot in (0, 1):
        assert (data / f"ledger-head.{slot}.json").read_bytes() == planted


def test_a_bundle_of_a_ledger_that_shredded_a_secret_imports_and_verifies(
        tmp_path: Path) -> None:
    """A ledger sets providers.openai.api_key (seq 1), changes the port (seq 2) and
    shreds the key (`shred --path providers.openai.api_key --yes`, seq 3); its `verify`
    passes. `bundle --with-secrets` writes the shredded row as `{"secret": …,
    "shredded_seq": 3, "sealed": null}`. `import-bundle` of it into an empty ledger under
    the same key exits 3, and `verify` (and `sign-head --adopt`) fail for good: "secret
    fp:… (set at providers.openai.api_key by event 1) has no stored value and no shred
    event: its sealed row was deleted": a tampering report for a ledger nobody touched.
    `import_bundle` (ops/export.py) puts only rows with a sealed value; the shredded
    row is dropped, where `copy_ledger` (backup/restore) keeps it shredded. The import
    should exit 0 and the imported ledger verify, as the source does."""
    a = tmp_path / "a"
    a.mkdir()
    env = _site(a, toml=TOML)
    _written(env)
    shred = _cli(env, "shred", "--path", "providers.openai.api_key", "--yes")
    assert shred.returncode == 0, shred.stderr
    assert _cli(env, "verify").returncode == 0
    bundle = tmp_path / "full.bundle"
    _bundle(env, bundle, "--with-secrets")
    b = _empty_site(tmp_path / "b", key_from=a / "ledger.key")
    imported = _cli(b, "import-bundle", str(bundle))
    assert imported.returncode == 0, imported.stderr
    verified = _cli(b, "verify")
    assert verified.returncode == 0, verified.stderr


# ---------------------------------------------------------------------------------
# exports


def test_a_masked_export_does_not_replace_a_migrated_gateways_config(tmp_path: Path) -> None:
    """A second gateway runs on the same ledger from its own config dir (here a copy of
    the migrated moltis.toml: `api_key = "<secret fp:…>"` as migrate masked it,
    `[config] backend = "sqlite"`, `ledger_id`). `export --masked -o <that dir>` exits 0
    and replaces its moltis.toml with the export: no `[config]` any more, so that
    gateway's open_store() falls back to the file store and sends the placeholder as
    the provider key. docs/cli.md: "a masked export is refused into any folder holding
    Moltis's files that are not an earlier masked export". `live_config_in`
    (ops/export.py) counts a file as an earlier masked export when its first 4 KB hold
    "secrets masked" or "<secret fp:", which every config migrate masked holds. It
    should be refused (exit non-zero) and the file left as it was."""
    env = _site(tmp_path, toml=TOML)
    gateway = tmp_path / "gateway2"
    gateway.mkdir()
    live = (tmp_path / "config" / "moltis.toml").read_bytes()
    assert b"<secret fp:" in live and b'backend = "sqlite"' in live
    (gateway / "moltis.toml").write_bytes(live)
    done = _cli(env, "export", "--masked", "-o", str(gateway))
    assert done.returncode != 0, done.stdout
    assert (gateway / "moltis.toml").read_bytes() == live


# ---------------------------------------------------------------------------------
# backup and restore


def test_a_restore_is_not_undone_by_a_hand_edit_already_imported(tmp_path: Path) -> None:
    """migrate (server.port = 13131), `backup -o b.db`, then the operator edits
    moltis.toml by hand to port 20000, which the next command imports (seq 2, source
    file). `restore --force b.db` exits 0 ("ok: the restored ledger verifies ... head
    seq 2"), but the very next command (`get server.port`) imports the same hand edit
    again (seq 3, source file, "hand edit of …/moltis.toml") and prints 20000: the
    restore is undone, though the file did not change since the last import. The
    restore copies the backup's `import.*` meta (ops/transfer.py `_meta_of`: the prints
    of the file as the backup's ledger last imported it), so the file looks edited
    relative to the backup. A rollback to seq 1 keeps 13131 (its import prints stay).
    The restored state should stand: the file's current prints (what the replaced
    ledger had imported) should not be re-imported as a new hand edit."""
    env = _site(tmp_path, toml=PLAIN_TOML)
    backup = tmp_path / "b.db"
    assert _cli(env, "backup", "-o", str(backup)).returncode == 0
    config = tmp_path / "config" / "moltis.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("13131", "20000"),
                      encoding="utf-8")
    assert _cli(env, "get", "server.port").stdout.strip() == "20000"  # imported: seq 2
    restored = _cli(env, "restore", "--force", str(backup))
    assert restored.returncode == 0, restored.stderr
    got = _cli(env, "get", "server.port")
    assert got.stdout.strip() == "13131", (got.stdout, got.stderr)
    log = json.loads(_cli(env, "--json", "log").stdout)
    assert [e["source"] for e in log["events"]] == ["restore", "import"], log


# ---------------------------------------------------------------------------------
# the ledger key


def test_a_write_does_not_create_a_key_for_a_ledger_that_holds_secrets(
        tmp_path: Path) -> None:
    """A migrated ledger (its provider api_key sealed) is moved to a new host: the data
    dir and moltis.toml are copied, the key not yet (docs: "a copy of the data dir does
    not carry the key"). `get server.port` works (14000). `set server.port 1` creates
    `<key dir>/ledger.key` (0600, a new random key) and `ledger-head.hwm`, then fails
    (exit 1): "the ledger key from key file …/ledger.key does not match the key this
    ledger's secrets were sealed with (if `key rotate --new-key-file FILE` was stopped
    part-way …)", naming as a wrong key the file it just made; after `import-bundle`
    of a bundle with secrets the same `set` even appends, unvouched, under the new
    file. vault.py: "A new key may only be created for a ledger that has never held a
    secret". No key file should be created for a ledger with a key_check row or
    sealed secrets; the error should say that the key is missing and where it goes."""
    a = tmp_path / "a"
    a.mkdir()
    env_a = _site(a, toml=TOML)
    _written(env_a)
    b = tmp_path / "b"
    (b / "config").mkdir(parents=True)
    shutil.copytree(a / "data", b / "data")
    shutil.copy(a / "config" / "moltis.toml", b / "config" / "moltis.toml")
    env = _env(b)
    assert _cli(env, "get", "server.port").stdout.strip() == "14000"
    _cli(env, "set", "server.port", "1")
    assert not (b / "ledger.key").exists()
