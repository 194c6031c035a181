"""Parity: for the same files, environment and flags, the file store and the ledger give
the same effective config and the same winning layer for every path (the seed's "same
effective config behaviour" test), on the fixtures and on generated configs."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import msgspec
import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Flags, SqliteConfigStore
from ledger.ops.migrate import migrate
from ledger.stores.file_store import FileConfigStore
from tests.conftest import run

ENV = {"MOLTIS_SERVER__BIND": "0.0.0.0", "MOLTIS_TOOLS__AGENT_TIMEOUT_SECS": "notanumber",
       "MOLTIS_CHAT__AUTO_TITLE": "false", "AGENT": "Atlas"}
FLAGS = Flags(port=8443)


def both(config_file: Path, work: Path) -> tuple[FileConfigStore, SqliteConfigStore]:
    file_store = FileConfigStore(config_file)
    # durability is not what parity compares: no fsync per commit
    ledger = SqliteConfigStore(work / "moltis.db", synchronous="NORMAL")
    migrate(ledger.ledger, config_file=config_file, keys_file=None, data_dir=work / "data")
    return file_store, ledger


def assert_same(file_store: FileConfigStore, ledger: SqliteConfigStore, env, flags) -> None:
    eff_file = run(file_store.load_effective(env=env, flags=flags))
    eff_ledger = run(ledger.load_effective(env=env, flags=flags))
    # [config] names the store each was read from: everything else is the same
    assert eff_file.config.backend == "file" and eff_ledger.config.backend == "sqlite"
    unwired = msgspec.structs.replace(eff_ledger, config=eff_file.config)
    assert eff_file == unwired
    meta_file = run(file_store.source_metadata(env=env, flags=flags))
    meta_ledger = run(ledger.source_metadata(env=env, flags=flags))
    assert set(meta_file) == set(meta_ledger)
    stored = {"file", "ledger"}
    for path, prov in meta_file.items():
        other = meta_ledger[path]
        if prov.layer in stored:
            assert other.layer in stored, path
        else:
            assert (prov.layer, prov.variable, prov.flag) == (
                other.layer, other.variable, other.flag), path
        assert prov.ignored == other.ignored, path
        assert prov.substituted == other.substituted, path


@pytest.mark.parametrize("name", ["template.moltis.toml", "docs-example.moltis.toml"])
def test_parity_on_the_fixtures(tmp_path, fixtures_dir, name):
    config_file = tmp_path / "moltis.toml"
    shutil.copy(fixtures_dir / name, config_file)
    file_store, ledger = both(config_file, tmp_path)
    for env, flags in ((ENV, FLAGS), ({}, Flags()), ({"MOLTIS_SERVER__PORT": "9000"}, Flags())):
        assert_same(file_store, ledger, env, flags)


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10)
documents = st.fixed_dictionaries({}, optional={
    "server": st.fixed_dictionaries({}, optional={
        "port": st.integers(0, 65535), "bind": text,
        "external_url": st.sampled_from(["${URL}", "https://a.example"])}),
    "identity": st.fixed_dictionaries({}, optional={"name": st.one_of(text, st.just("${AGENT}"))}),
    "tools": st.fixed_dictionaries({}, optional={
        "agent_timeout_secs": st.integers(0, 10**6), "agent_max_iterations": st.integers(1, 99)}),
    "chat": st.fixed_dictionaries({}, optional={"auto_title": st.booleans()}),
    "providers": st.fixed_dictionaries({}, optional={
        "offered": st.lists(st.sampled_from(["openai", "anthropic"]), max_size=2),
        "openai": st.fixed_dictionaries({}, optional={"models": st.lists(text, max_size=2)})}),
    "mystery": st.fixed_dictionaries({"kept": text}),
})
environments = st.dictionaries(
    st.sampled_from(["MOLTIS_SERVER__PORT", "MOLTIS_SERVER__BIND", "MOLTIS_CHAT__AUTO_TITLE",
                     "MOLTIS_TOOLS__AGENT_MAX_ITERATIONS", "AGENT", "URL"]),
    st.sampled_from(["1", "9000", "true", "x", "[1]", "notanumber"]), max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents, environments, st.one_of(st.none(), st.integers(1, 65535)))
def test_parity_on_generated_configs(doc, env, port):
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        config_file = work / "moltis.toml"
        config_file.write_text(tomlkit.dumps(doc))
        file_store, ledger = both(config_file, work)
        try:
            assert_same(file_store, ledger, env, Flags(port=port))
        finally:
            ledger.ledger.close()
