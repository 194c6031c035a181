"""`update_raw`: a top-level section replaced by assignment, without being read first
(`cfg.server = ServerConfig(...)`), is recorded (it used to be silently dropped: the
edit copy only compared the sections that were read)."""

from __future__ import annotations

from ledger.schema.agents import HookConfig, HooksConfig
from ledger.schema.server import ServerConfig
from tests.conftest import run


def test_a_section_assigned_without_being_read_is_recorded(ledger_factory):
    store = ledger_factory()
    commit = run(store.update_raw(lambda c: setattr(c, "server", ServerConfig(port=1234))))
    assert [(c.path, c.value) for c in commit.changes] == [(("server", "port"), 1234)]
    hooks = HooksConfig(hooks=[HookConfig(name="h", command="x", events=["e"])])
    commit = run(store.update_raw(lambda c: setattr(c, "hooks", hooks)))
    assert [c.path for c in commit.changes] == [("hooks", "hooks")]
    cfg = run(store.load_effective(env={}))
    assert cfg.server.port == 1234 and cfg.hooks is not None
    assert cfg.hooks.hooks[0].name == "h"
