"""A large, realistic `moltis.toml` for every size-dependent figure (issue 16).

The 57 KB template is almost all comments (about 50 bytes of values), so figures run on
it say nothing about a large configuration; it stays as the "mostly comments" case.
This generator writes what a busy gateway's file looks like: the docs example plus many
providers (models, aliases, per-model overrides), top-level model overrides, MCP servers
(commands, arguments, environment), channel accounts, agent presets (identities, tool
policies, prompt suffixes), mode presets and hooks; no comments. It is deterministic
(a fixed seed, no clock, no environment): the same bytes on every machine and run, so
figures stay comparable. Secrets are `${VAR}` references, as operators keep them.

    python -m benchmarks.largeconfig [OUT]   # writes the file (default: stdout)
"""

from __future__ import annotations

import random
import sys
import tomllib
from pathlib import Path
from typing import Any

import tomlkit

__all__ = ["MIN_VALUE_BYTES", "large_config", "large_config_text"]

MIN_VALUE_BYTES = 50_000  # the floor: at least 50 KB of values
SEED = 16

_PROVIDERS = ["openai", "anthropic", "gemini", "mistral", "groq", "deepseek", "xai",
              "openrouter", "ollama", "together", "fireworks", "cerebras", "perplexity",
              "cohere", "moonshot", "zai", "minimax", "qwen", "bedrock", "azure"]
_WORDS = ["alpha", "bravo", "cedar", "delta", "ember", "fjord", "garnet", "harbor",
          "indigo", "juniper", "kestrel", "lumen", "meridian", "nimbus", "onyx", "prism",
          "quartz", "raven", "sierra", "tundra", "umber", "vector", "willow", "zephyr"]
_TOOLS = ["exec", "browser", "web_fetch", "web_search", "memory_search", "memory_save",
          "sessions_send", "sessions_list", "cron", "calc", "image_gen", "code_index",
          "file_read", "file_write", "spawn_agent", "send_message"]
_EVENTS = ["BeforeToolCall", "AfterToolCall", "BeforeAgentStart", "AgentEnd",
           "MessageReceived", "MessageSending", "SessionStart", "SessionEnd", "Command"]


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def large_config(seed: int = SEED) -> dict[str, Any]:
    """The document (deterministic for a given seed)."""
    rng = random.Random(seed)
    doc: dict[str, Any] = {
        "server": {"port": 13131, "bind": "0.0.0.0"},
        "identity": {"name": "Atlas"},
        "tools": {"agent_timeout_secs": 600, "agent_max_iterations": 25,
                  "exec": {"sandbox": {"mode": "all", "scope": "session",
                                       "workspace_mount": "ro", "home_persistence": "session",
                                       "backend": "auto", "no_network": True,
                                       "packages": ["curl", "git", "jq", "python3", "nodejs",
                                                    "golang-go", "ripgrep", "sqlite3"]}}},
        "memory": {"backend": "builtin", "provider": "openai",
                   "model": "text-embedding-3-small"},
        "auth": {"disabled": False},
    }
    providers: dict[str, Any] = {"offered": list(_PROVIDERS)}
    for i, name in enumerate(_PROVIDERS):
        models = [f"{name}-{rng.choice(_WORDS)}-{v}" for v in range(1, 13)]
        providers[name] = {
            "api_key": f"${{{name.upper()}_API_KEY}}",
            "base_url": f"https://api.{name}.example.com/v{1 + i % 3}",
            "models": models,
            "alias": f"{name}-{rng.choice(_WORDS)}",
            "tool_mode": rng.choice(["auto", "native", "text"]),
            "cache_retention": rng.choice(["none", "short", "long"]),
            "probe_timeout_secs": 10 + i,
            "model_overrides": {m: {"context_window": rng.choice([32_000, 128_000, 200_000,
                                                                  1_000_000])}
                                for m in models[:6]},
        }
    doc["providers"] = providers
    doc["models"] = {f"custom-{w}-{n}": {"context_window": 8_192 * (1 + n)}
                     for n in range(6) for w in _WORDS[:10]}
    doc["mcp"] = {"request_timeout_secs": 45, "servers": {
        f"{w}-{n}": {
            "command": rng.choice(["npx", "uvx", "docker", "/usr/local/bin/mcp-server"]),
            "args": ["-y", f"@example/mcp-{w}-{n}", "--root", f"/srv/data/{w}/{n}",
                     "--log-level", "info"],
            "env": {"MCP_TOKEN": f"${{MCP_{w.upper()}_{n}_TOKEN}}", "REGION": "eu-west-1"},
            "request_timeout_secs": 20 + n,
            "display_name": f"{w.capitalize()} tools {n}",
        } for n in range(3) for w in _WORDS[:16]}}
    channels: dict[str, Any] = {"offered": ["telegram", "discord", "slack", "msteams"]}
    for kind in ("telegram", "discord", "slack", "msteams"):
        channels[kind] = {
            f"{kind}-{w}": {
                "token": f"${{{kind.upper()}_{w.upper()}_TOKEN}}",
                "dm_policy": rng.choice(["open", "allowlist", "disabled"]),
                "allowlist": [f"user-{rng.randrange(10**6):06d}" for _ in range(6)],
                "model": f"{rng.choice(_PROVIDERS)}-{rng.choice(_WORDS)}-1",
                "mention_only": rng.random() < 0.5,
            } for w in _WORDS[:8]}
    doc["channels"] = channels
    doc["agents"] = {"default_preset": "research", "presets": {
        f"{w}-{n}": {
            "identity": {"name": f"{w.capitalize()} {n}", "emoji": "🤖", "theme": w},
            "model": f"{rng.choice(_PROVIDERS)}-{rng.choice(_WORDS)}-{1 + n}",
            "tools": {"allow": rng.sample(_TOOLS, 6), "deny": rng.sample(_TOOLS, 2)},
            "system_prompt_suffix": _sentence(rng, 40),
            "max_iterations": 10 + n * 5,
            "timeout_secs": 300 + n * 60,
            "reasoning_effort": rng.choice(["low", "medium", "high"]),
        } for n in range(2) for w in _WORDS}}
    doc["modes"] = {"presets": {w: {"name": w.capitalize(), "description": _sentence(rng, 12),
                                    "prompt": _sentence(rng, 30)} for w in _WORDS[:10]}}
    doc["hooks"] = {"hooks": [
        {"name": f"{w}-{n}", "command": f"./hooks/{w}-{n}.sh",
         "events": rng.sample(_EVENTS, 3), "timeout": 5 + n,
         "env": {"HOOK_LOG": f"/var/log/moltis/{w}-{n}.log"}}
        for n in range(2) for w in _WORDS]}
    return doc


def large_config_text(seed: int = SEED) -> str:
    """The document as TOML (no comments)."""
    text = tomlkit.dumps(large_config(seed))
    if len(text.encode()) < MIN_VALUE_BYTES:  # the generator must keep its promise
        raise AssertionError(f"the large config has only {len(text.encode()):,} bytes")
    tomllib.loads(text)  # and be valid TOML
    return text


def main(argv: list[str]) -> None:
    text = large_config_text()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
