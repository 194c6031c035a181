"""Agents and what they may use: agent presets, session modes, skills, MCP servers,
external CLI agents and shell hooks."""


from typing import Annotated, ClassVar, Literal

import msgspec

from ledger.core.secret_refs import Secret
from ledger.schema.base import Section, UInt, choices, sealed_by_name

__all__ = [
    "AgentsConfig",
    "ExternalAgentConfig",
    "ExternalAgentsConfig",
    "HookConfig",
    "HooksConfig",
    "McpConfig",
    "McpOAuthConfig",
    "McpServerConfig",
    "ModePresetConfig",
    "ModesConfig",
    "PresetConfig",
    "PresetIdentity",
    "PresetMcpPolicy",
    "PresetMemoryConfig",
    "PresetSandboxPolicy",
    "PresetSessionsPolicy",
    "PresetSkillPolicy",
    "PresetToolPolicy",
    "SkillsConfig",
    "ToolChoice",
    "ToolControls",
]


class PresetIdentity(Section):
    """`identity` of an agent preset."""

    name: str | None = None
    emoji: str | None = None
    theme: str | None = None


class PresetToolPolicy(Section):
    """`tools` of an agent preset: allow acts as a whitelist, deny removes from it."""

    allow: list[str] = msgspec.field(default_factory=list)
    deny: list[str] = msgspec.field(default_factory=list)


class PresetSessionsPolicy(Section):
    """`sessions` of an agent preset: which sessions the agent may see and message."""

    key_prefix: str | None = None
    allowed_keys: list[str] = msgspec.field(default_factory=list)
    can_send: bool = True
    cross_agent: bool = False


class PresetMemoryConfig(Section):
    """`memory` of an agent preset: its persistent MEMORY.md."""

    scope: Literal["user", "project", "local"] = "user"
    max_lines: UInt = 200


class PresetMcpPolicy(Section):
    """`mcp` of an agent preset; the two lists are mutually exclusive.

    Absent and empty differ: `allow_servers = []` hides every MCP server, while no
    `allow_servers` key leaves them all visible.
    """

    allow_servers: list[str] | None = None
    deny_servers: list[str] | None = None


class PresetSandboxPolicy(Section):
    """`sandbox` of an agent preset; absent fields inherit `[tools.exec.sandbox]`."""

    mode: Literal["off", "non-main", "all"] | None = None


class PresetSkillPolicy(Section):
    """`skills` of an agent preset, by skill name or category."""

    # Option<Vec<String>> in Moltis: None (absent) is no restriction, while an explicit
    # `allow = []` allows no skill at all, so the two must stay distinguishable.
    allow: list[str] | None = None
    deny: list[str] | None = None


class ToolChoice(Section):
    """`tool_controls.tool_choice`: Moltis's internally tagged `ToolChoice` enum
    (`{type = "auto" | "any" | "none"}` or `{type = "tool", name = "..."}`)."""

    # serde reads a tagged enum through its buffered `Content`: a plain YAML number
    # stays a number there, which `name` refuses (`introspect.text_reading`)
    __buffered__: ClassVar[bool] = True

    type: Literal["auto", "any", "none", "tool"]
    name: str | None = None


class ToolControls(Section):
    """`[agents.presets.<id>.tool_controls]`: per-run tool visibility and choice."""

    active_tools: list[str] | None = None
    tool_choice: ToolChoice | None = None


class PresetConfig(Section):
    """`[agents.presets.<id>]`: identity, model and boundaries of an agent."""

    identity: PresetIdentity = msgspec.field(default_factory=PresetIdentity)
    model: str | None = None
    tools: PresetToolPolicy = msgspec.field(default_factory=PresetToolPolicy)
    delegate_only: bool = False
    system_prompt_suffix: str | None = None
    max_iterations: UInt | None = None
    timeout_secs: UInt | None = None
    sessions: PresetSessionsPolicy | None = None
    memory: PresetMemoryConfig | None = None
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    mcp: PresetMcpPolicy = msgspec.field(default_factory=PresetMcpPolicy)
    sandbox: PresetSandboxPolicy = msgspec.field(default_factory=PresetSandboxPolicy)
    skills: PresetSkillPolicy = msgspec.field(default_factory=PresetSkillPolicy)
    tool_controls: ToolControls = msgspec.field(default_factory=ToolControls)


class AgentsConfig(Section):
    """`[agents]`: agent and sub-agent presets.

    `presets` holds only what the configuration sets. Moltis merges its built-in presets
    (research, coder, reviewer, qa, ux, docs, coordinator) underneath at load time, so a
    user entry with a built-in's name replaces that built-in.
    """

    # Option<String> defaulting to Some("research"): a JSON/YAML null is None to Moltis
    # (`check` says so; the ledger, whose files are TOML, has no null to store)
    default_preset: str | None = "research"
    presets: dict[str, PresetConfig] = msgspec.field(default_factory=dict)


class ModePresetConfig(Section):
    """`[modes.presets.<id>]`: a per-session prompt overlay selected with `/mode`."""

    name: str | None = None
    description: str | None = None
    prompt: str = ""


class ModesConfig(Section):
    """`[modes]`: session modes; built-in modes are merged underneath like agent presets."""

    presets: dict[str, ModePresetConfig] = msgspec.field(default_factory=dict)


class SkillsConfig(Section):
    """`[skills]`: the skills system."""

    enabled: bool = True
    search_paths: list[str] = msgspec.field(default_factory=list)
    auto_load: list[str] = msgspec.field(default_factory=list)
    enable_agent_sidecar_files: bool = False
    enable_self_improvement: bool = True
    disabled_bundled_categories: list[str] = msgspec.field(default_factory=list)
    disabled_bundled_skills: list[str] = msgspec.field(default_factory=list)


class McpOAuthConfig(Section):
    """`[mcp.servers.<name>.oauth]`: manual OAuth for servers without discovery."""

    client_id: str
    auth_url: str
    token_url: str
    client_secret: Secret | None = None
    scopes: list[str] = msgspec.field(default_factory=list)


class McpServerConfig(Section):
    """`[mcp.servers.<name>]`: one Model Context Protocol server."""

    command: str = ""
    args: list[str] = msgspec.field(default_factory=list)
    env: dict[str, Secret] = msgspec.field(default_factory=dict)
    enabled: bool = True
    # Absent: `[mcp] request_timeout_secs`.
    request_timeout_secs: UInt | None = None
    # a Rust `String` (runtime.rs McpServerEntry): any text loads
    transport: Annotated[str, choices("stdio", "sse", "streamable-http")] = "stdio"
    url: str | None = None
    # Remote transports carry bearer tokens here.
    headers: dict[str, Secret] = msgspec.field(default_factory=dict)
    oauth: McpOAuthConfig | None = None
    display_name: str | None = None


class McpConfig(Section):
    """`[mcp]`: MCP servers (`<data_dir>/mcp-servers.json` wins for the same name)."""

    request_timeout_secs: UInt = 30
    servers: dict[str, McpServerConfig] = msgspec.field(default_factory=dict)


class ExternalAgentConfig(Section):
    """`[external_agents.agents.<kind>]`: overrides for one external CLI agent."""

    # Absent: looked up on $PATH.
    binary: str | None = None
    args: list[str] | None = None  # absent: the agent's own default arguments
    models: list[str] = msgspec.field(default_factory=list)
    efforts: list[str] = msgspec.field(default_factory=list)
    # Typically provider API keys for the agent.
    env: dict[str, Secret] = msgspec.field(default_factory=dict)
    working_dir: str | None = None
    timeout_secs: UInt | None = None
    use_tmux: bool | None = None  # absent: Moltis decides per agent


class ExternalAgentsConfig(Section):
    """`[external_agents]`: chat sessions backed by external coding agents."""

    enabled: bool = True
    agents: dict[str, ExternalAgentConfig] = msgspec.field(default_factory=dict)


class HookConfig(Section):
    """`[[hooks.hooks]]`: a shell hook; Moltis requires name, command and events."""

    name: str
    command: str
    events: list[str]
    timeout: UInt = 10
    # Moltis types these as plain strings; they carry the hook's tokens, so the ledger
    # seals those under secret-shaped names (`API_TOKEN`), and the gateway gets text.
    env: dict[str, Annotated[str, sealed_by_name()]] = msgspec.field(default_factory=dict)


class HooksConfig(Section):
    """`[hooks]`: shell hooks defined in the config file."""

    hooks: list[HookConfig] = msgspec.field(default_factory=list)
