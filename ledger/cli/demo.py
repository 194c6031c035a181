"""`moltis-ledger demo`: a guided tour on sample files, as an operator would type it.

Every step runs the real command line (in this process, through `ledger.cli.app.run`)
after printing it, against a temporary config and data directory; nothing of the
operator's own configuration is read or touched (MOLTIS_* variables are set aside
for the duration of the tour).
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ledger.cli.render import Output

__all__ = ["run_demo"]

SAMPLE_TOML = """\
# Moltis gateway configuration (a sample written by `moltis-ledger demo`)

[server]
bind = "127.0.0.1"
port = 13131

[identity]
name = "Atlas"

[providers]
offered = ["anthropic", "openai"]

[tools]
agent_timeout_secs = 600
agent_max_iterations = 25

[tools.exec.sandbox]
mode = "all"
no_network = true
packages = ["curl", "git", "jq"]

[memory]
backend = "builtin"
provider = "openai"
model = "text-embedding-3-small"
"""

SAMPLE_KEYS = """\
{
  "anthropic": {
    "apiKey": "sk-ant-demo-0000-not-a-real-key",
    "models": ["claude-sonnet-4-5"]
  },
  "openai": {
    "apiKey": "sk-demo-1111-not-a-real-key",
    "baseUrl": "https://api.openai.com/v1",
    "models": ["gpt-5", "gpt-4o"]
  }
}
"""

ROTATED_KEY = "sk-demo-2222-rotated-not-a-real-key"
EDIT = "!edit"  # a demo step that edits moltis.toml by hand: [EDIT, old text, new text]

# (explanation, arguments, stdin); "{export}" is replaced by the export folder
STEPS: list[tuple[str, list[str], str | None]] = [
    ("Import the two files into the ledger. A backup of both, with a manifest of "
     "their blake3 hashes, is written first; secrets are sealed and shown masked.",
     ["migrate", "--reason", "move the config to the ledger"], None),
    ("Run it again: the files did not change, so nothing is imported (idempotent).",
     ["migrate"], None),
    ("Someone edits moltis.toml by hand, as operators do...",
     [EDIT, 'name = "Atlas"', 'name = "Nova"'], None),
    ("...and the next command (or the gateway, on open or while watching) imports the "
     "edit as an audited event: source `file`, the file's owner as the actor.",
     ["log", "--limit", "1"], None),
    ("Change a value. Every change is one event: who, why, when, what.",
     ["--actor", "alice", "set", "server.port", "8080", "--reason",
      "free 13131 for the reverse proxy"], None),
    ("A second change, by someone else.",
     ["--actor", "bob", "set", "tools.agent_timeout_secs", "900", "--reason",
      "long builds time out"], None),
    ("The history, newest first.", ["log"], None),
    ("What changed since seq 1 (the import)?", ["diff", "1"], None),
    ("Who last set each key under [server]?", ["blame", "server"], None),
    ("Undo bob's change: preview first...", ["rollback", "--to", "3", "--dry-run"], None),
    ("...then roll back. This appends a compensating event; history is never rewritten.",
     ["--actor", "alice", "rollback", "--to", "3", "--reason",
      "the longer timeout broke the nightly job"], None),
    ("The configuration now (moltis.toml as the ledger holds it).", ["show"], None),
    ("Export the files at any point. --masked writes placeholders (a copy to read, "
     "refused into a live config folder); --reveal-secrets writes the values.",
     ["export", "-o", "{export}", "--masked"], None),
    ("Rotate a provider key. `-` reads it from a hidden prompt or a pipe, so it never "
     "lands in shell history; it is stored encrypted.",
     ["--actor", "alice", "providers", "set", "openai", "--api-key", "-", "--reason",
      "rotate the OpenAI key"], ROTATED_KEY),
    ("The key store: keys are masked (a keyed fingerprint shows whether a key changed).",
     ["providers", "list"], None),
    ("The rotation in the log: a new fingerprint, never the key.",
     ["log", "--limit", "1"], None),
    ("Check the hash chain, and note the head hash somewhere else: `verify "
     "--expect-head HASH` later also catches a truncated log.", ["verify"], None),
    ("The way back to plain files, in one step: the ledger's head written into "
     "moltis.toml and provider_keys.json (comments kept), the gateway switched, and the "
     "file store proven to give the same config. `switch-backend sqlite` goes back.",
     ["switch-backend", "file"], None),
]


@contextmanager
def moltis_env_only(values: Mapping[str, str]) -> Iterator[None]:
    """This process's MOLTIS_* variables set aside, the MOLTIS_* ones of `values` in
    their place, until the block ends (the tour's own directories; the tests' sites)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MOLTIS_")}
    for name in saved:
        del os.environ[name]
    os.environ.update({k: v for k, v in values.items() if k.startswith("MOLTIS_")})
    try:
        yield
    finally:
        for name in [k for k in os.environ if k.startswith("MOLTIS_")]:
            del os.environ[name]
        os.environ.update(saved)


@contextmanager
def _stdin(text: str | None) -> Iterator[None]:
    if text is None:
        yield
        return
    saved = sys.stdin
    sys.stdin = io.StringIO(text + "\n")
    try:
        yield
    finally:
        sys.stdin = saved


def _hand_edit(out: Output, path: Path, old: str, new: str) -> None:
    """What an operator's editor does: the text replaced, nothing else touched."""
    out.step(f"sed -i {shlex.quote(f's/{old}/{new}/')} {shlex.quote(str(path))}")
    path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


def run_demo(directory: Path | None) -> int:
    """Run the tour; returns the exit code of the first failing step, else 0."""
    from ledger.cli.app import run

    out = Output()
    keep = directory is not None
    root = directory if directory is not None else Path(tempfile.mkdtemp(prefix="ledger-demo-"))
    config_dir, data_dir, export_dir = root / "config", root / "data", root / "export"
    config_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    if (data_dir / "moltis.db").exists():
        out.error(f"{data_dir / 'moltis.db'} exists already: give --dir an empty folder")
        return 1
    (config_dir / "moltis.toml").write_text(SAMPLE_TOML, encoding="utf-8")
    (config_dir / "provider_keys.json").write_text(SAMPLE_KEYS, encoding="utf-8")
    os.chmod(config_dir / "provider_keys.json", 0o600)

    out.line("moltis-ledger demo: the operator's workflow on sample files", "bold")
    out.line(f"Moltis's files: {config_dir}/moltis.toml and provider_keys.json (sample "
             f"keys); the ledger: {data_dir}/moltis.db. The commands below use them via:")
    out.step(f"export MOLTIS_CONFIG_DIR={shlex.quote(str(config_dir))} "
             f"MOLTIS_DATA_DIR={shlex.quote(str(data_dir))}")
    code = 0
    try:
        with moltis_env_only({"MOLTIS_CONFIG_DIR": str(config_dir),
                              "MOLTIS_DATA_DIR": str(data_dir)}):
            for explanation, args, stdin in STEPS:
                argv = [a.replace("{export}", str(export_dir)) for a in args]
                out.out.print()
                out.line(f"# {explanation}", "dim")
                if argv[0] == EDIT:
                    _hand_edit(out, config_dir / "moltis.toml", argv[1], argv[2])
                    continue
                shown = shlex.join(argv)
                if stdin is not None:
                    shown = f'echo "$OPENAI_API_KEY" | moltis-ledger {shown}'
                    out.step(shown)
                else:
                    out.step(f"moltis-ledger {shown}")
                sys.stdout.flush()
                with _stdin(stdin):
                    code = run(argv)
                sys.stdout.flush()
                if code:
                    out.error(f"this step failed with exit code {code}; the tour stops here")
                    return code
    finally:
        out.out.print()
        if keep:
            out.line(f"Everything is kept in {root} (the ledger, the backup folder under "
                     "data/backups, the export).", "bold")
        else:
            shutil.rmtree(root, ignore_errors=True)
            if code == 0:
                out.line("Done. The temporary folder was removed; run `moltis-ledger demo "
                         "--dir DIR` to keep it, or `moltis-ledger COMMAND -h` for more.",
                         "bold")
    return code
