"""A migrated SQLite installation made by the real CLI in its own process, for tests
that run the CLI (and the library) as separate processes against it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

SECRET = "sk-PLAINTEXT-SECRET-7f3a9c1e5b"


def site_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a migrated ledger under `tmp_path` (config/, data/, a key in
    $MOLTIS_LEDGER_KEY); moltis.toml held SECRET before the migration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTIS_")}
    config, data = tmp_path / "config", tmp_path / "data"
    config.mkdir()
    data.mkdir()
    (config / "moltis.toml").write_text(
        f'[server]\nport = 13131\n[providers.openai]\napi_key = "{SECRET}"\n',
        encoding="utf-8")
    env.update(MOLTIS_CONFIG_DIR=str(config), MOLTIS_DATA_DIR=str(data),
               MOLTIS_LEDGER_KEY=secrets.token_hex(32), MOLTIS_LEDGER_ACTOR="tester@ci",
               MOLTIS_CONFIG_BACKEND="sqlite")
    subprocess.run([sys.executable, "-m", "ledger", "migrate", "--actor", "installer"],
                   env=env, check=True, capture_output=True, timeout=120)
    return env
