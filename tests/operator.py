"""An operator's installation for in-process CLI tests: a config dir with moltis.toml
(comments, a secret) and provider_keys.json, a data dir, and `run()` invoking the CLI
through click's CliRunner isolation (stdout and stderr apart, the real exit code)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

TOML = """\
# the gateway of the team (hand-written)
[server]
bind = "127.0.0.1"
port = 13131  # the public port

[identity]
name = "Atlas"

[providers.openai]
enabled = true

[tools]
agent_timeout_secs = 600
"""

KEYS = {"anthropic": {"apiKey": "sk-ant-operator-0001", "models": ["claude-sonnet-4-5"]},
        "openai": {"apiKey": "sk-openai-operator-0002"}}


@dataclass
class Out:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Site:
    root: Path

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def toml(self) -> Path:
        return self.config_dir / "moltis.toml"

    @property
    def keys(self) -> Path:
        return self.config_dir / "provider_keys.json"

    @property
    def db(self) -> Path:
        return self.data_dir / "moltis.db"

    def run(self, *args: str, input: str | None = None) -> Out:
        import sys

        from ledger.cli import run

        runner = CliRunner()
        with runner.isolation(input=input) as streams:
            code = run(list(args))
            sys.stdout.flush()
            sys.stderr.flush()
            out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
        return Out(code, out, err)

    def ok(self, *args: str, input: str | None = None) -> Out:
        result = self.run(*args, input=input)
        assert result.code == 0, (args, result)
        return result

    def edit(self, old: str, new: str) -> None:
        text = self.toml.read_text(encoding="utf-8")
        assert old in text, old
        self.toml.write_text(text.replace(old, new), encoding="utf-8")


def make_site(tmp_path: Path, *, keys: bool = True) -> Site:
    """The files of a Moltis installation; MOLTIS_CONFIG_DIR/DATA_DIR point at them
    (conftest's isolated_env)."""
    site = Site(tmp_path)
    site.config_dir.mkdir(parents=True, exist_ok=True)
    site.toml.write_text(TOML, encoding="utf-8")
    if keys:
        site.keys.write_text(json.dumps(KEYS, indent=2), encoding="utf-8")
    return site
