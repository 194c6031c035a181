"""The README's embedding example really runs: a gateway process serves its effective
config and reloads when another process changes the ledger."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ledger import SqliteConfigStore
from tests.conftest import run

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as r:
        return json.loads(r.read())


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_gateway_example_reloads_on_change(tmp_path):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "moltis.toml").write_text(
        '[server]\nport = 13131\n\n[providers.openai]\napi_key = "sk-GATEWAY-SECRET-1"\n')
    env = {**os.environ, "MOLTIS_CONFIG_BACKEND": "sqlite"}
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "gateway.py"),
                             "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = wait_for(lambda: fetch(port))
        assert first["config"]["server"]["port"] == 13131
        assert "sk-GATEWAY" not in json.dumps(first)
        store = SqliteConfigStore(tmp_path / "data" / "moltis.db")
        run(store.update_raw(lambda c: setattr(c.server, "port", 9000), actor="ops",
                             reason="move the gateway"))
        after = wait_for(lambda: (r := fetch(port))["config"]["server"]["port"] == 9000 and r)
        assert after["seq"] == 2
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "seq 2 by ops: server.port" in err
