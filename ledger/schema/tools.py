"""`[tools]`: agent loop limits, command execution and its sandbox, tool policy, web,
maps, browser and filesystem tools."""


from typing import Annotated, Literal

import msgspec

from ledger.core.secret_refs import Secret
from ledger.schema.base import Percent, Section, UInt, UInt8, UInt32, choices, expected

__all__ = [
    "BrowserConfig",
    "ExecConfig",
    "FirecrawlConfig",
    "FsToolsConfig",
    "MapsConfig",
    "PerplexityConfig",
    "ResourceLimitsConfig",
    "SandboxConfig",
    "ToolPolicyConfig",
    "ToolsConfig",
    "WasmToolLimitOverride",
    "WasmToolLimitsConfig",
    "WebConfig",
    "WebFetchConfig",
    "WebSearchConfig",
]

_MIB = 1024 * 1024


class ToolPolicyConfig(Section):
    """An allow/deny tool policy (`[tools.policy]`, per provider, per sandbox)."""

    allow: list[str] = msgspec.field(default_factory=list)
    deny: list[str] = msgspec.field(default_factory=list)
    profile: str | None = None


class ResourceLimitsConfig(Section):
    """`[tools.exec.sandbox.resource_limits]`: container limits."""

    memory_limit: str | None = None
    cpu_quota: float | None = None  # Rust Option<f64>
    pids_max: UInt32 | None = None


class WasmToolLimitOverride(Section):
    """Per-tool WASM fuel and memory override."""

    fuel: UInt | None = None
    memory: UInt | None = None


def _default_wasm_tool_overrides() -> dict[str, WasmToolLimitOverride]:
    # Moltis fills these in whenever `wasm_tool_limits` is present without them.
    return {
        "calc": WasmToolLimitOverride(fuel=100_000, memory=2 * _MIB),
        "web_fetch": WasmToolLimitOverride(fuel=10_000_000, memory=32 * _MIB),
        "web_search": WasmToolLimitOverride(fuel=10_000_000, memory=32 * _MIB),
        "show_map": WasmToolLimitOverride(fuel=10_000_000, memory=64 * _MIB),
        "location": WasmToolLimitOverride(fuel=5_000_000, memory=16 * _MIB),
    }


class WasmToolLimitsConfig(Section):
    """`[tools.exec.sandbox.wasm_tool_limits]`: WASM sandbox limits."""

    default_memory: UInt = 16 * _MIB
    default_fuel: UInt = 1_000_000
    tool_overrides: dict[str, WasmToolLimitOverride] = msgspec.field(
        default_factory=_default_wasm_tool_overrides
    )


class SandboxConfig(Section):
    """`[tools.exec.sandbox]`: where and how agent commands are isolated."""

    # Rust `String`s (tools.rs SandboxConfig): any text loads; `check` warns.
    mode: Annotated[str, choices("off", "non-main", "all")] = "all"
    scope: Annotated[str, choices("command", "session", "global")] = "session"
    workspace_mount: Annotated[str, choices("ro", "rw", "none")] = "ro"
    managed_files_mount: Literal["ro", "rw", "none"] = "ro"
    host_data_dir: str | None = None
    home_persistence: Literal["off", "session", "shared"] = "shared"
    shared_home_dir: str | None = None
    image: str | None = None
    container_prefix: str | None = None
    # The template's comment shows `true`; Moltis's default is false.
    no_network: bool = False
    # A Rust `String`, default "": empty means "the legacy `no_network` flag decides".
    # Moltis loads any text; its `config check` warns about values other than
    # blocked/trusted/bypass, and so does ours (`ledger.typed.check`), never refusing.
    network: Annotated[str, choices("", "blocked", "trusted", "bypass")] = ""
    trusted_domains: list[str] = msgspec.field(default_factory=list)
    # Open-ended: besides auto/docker/podman/apple-container/restricted-host/wasm, Moltis
    # grows remote backends (Vercel, Daytona, Firecracker) between releases.
    backend: str = "auto"
    resource_limits: ResourceLimitsConfig = msgspec.field(default_factory=ResourceLimitsConfig)
    gpus: str | None = None
    allow_host_podman: bool = False
    allow_nested_podman: bool = False
    # Absent means Moltis's built-in apt list (~150 packages, changing per release), while an
    # explicit [] means "install nothing", so the two must stay distinguishable.
    packages: list[str] | None = None
    wasm_fuel_limit: UInt | None = None
    wasm_epoch_interval_ms: UInt | None = None
    wasm_tool_limits: WasmToolLimitsConfig | None = None
    fs_allow_paths: list[str] = msgspec.field(default_factory=list)
    tools_policy: ToolPolicyConfig | None = None
    vercel_token: Secret | None = None
    vercel_project_id: str | None = None
    vercel_team_id: str | None = None
    vercel_runtime: str | None = None
    vercel_timeout_ms: UInt | None = None
    vercel_vcpus: UInt32 | None = None
    vercel_snapshot_id: str | None = None
    daytona_api_key: Secret | None = None
    daytona_api_url: str | None = None
    daytona_target: str | None = None
    daytona_image: str | None = None
    firecracker_bin: str | None = None
    firecracker_kernel: str | None = None
    firecracker_rootfs: str | None = None
    firecracker_ssh_key: str | None = None
    firecracker_vcpus: UInt32 | None = None
    firecracker_memory_mb: UInt32 | None = None


class ExecConfig(Section):
    """`[tools.exec]`: the command execution tool."""

    default_timeout_secs: UInt = 30
    max_output_bytes: UInt = 200 * 1024
    # Rust `String`s (tools.rs ExecConfig): any text loads; `check` warns.
    approval_mode: Annotated[str, choices("always", "on-miss", "never")] = "on-miss"
    security_level: Annotated[str, choices("permissive", "allowlist", "strict")] = "allowlist"
    allowlist: list[str] = msgspec.field(default_factory=list)
    sandbox: SandboxConfig = msgspec.field(default_factory=SandboxConfig)
    host: Annotated[str, choices("local", "node", "ssh")] = "local"
    node: str | None = None
    ssh_target: str | None = None


class MapsConfig(Section):
    """`[tools.maps]`: the map link provider."""

    provider: Literal["google_maps", "apple_maps", "openstreetmap"] = "google_maps"


class FsToolsConfig(Section):
    """`[tools.fs]`: native Read/Write/Edit/Glob/Grep tools."""

    workspace_root: str | None = None
    allow_paths: list[str] = msgspec.field(default_factory=list)
    deny_paths: list[str] = msgspec.field(default_factory=list)
    track_reads: bool = False
    must_read_before_write: bool = False
    # The template's comment shows `true` (suggested for new installs); Moltis's
    # built-in default stays false.
    require_approval: bool = False
    max_read_bytes: UInt = 10 * _MIB
    binary_policy: Literal["reject", "base64"] = "reject"
    respect_gitignore: bool = True
    checkpoint_before_mutation: bool = False
    context_window_tokens: UInt | None = None


class PerplexityConfig(Section):
    """`[tools.web.search.perplexity]`."""

    api_key: Secret | None = None
    base_url: str | None = None
    model: str | None = None


class WebSearchConfig(Section):
    """`[tools.web.search]`: the web_search tool."""

    enabled: bool = True
    provider: Literal["brave", "perplexity", "firecrawl"] = "brave"
    api_key: Secret | None = None
    max_results: Annotated[UInt8, expected(1, 10)] = 5  # Rust u8
    timeout_seconds: UInt = 30
    cache_ttl_minutes: UInt = 15
    duckduckgo_fallback: bool = False
    perplexity: PerplexityConfig = msgspec.field(default_factory=PerplexityConfig)


class WebFetchConfig(Section):
    """`[tools.web.fetch]`: the web_fetch tool."""

    enabled: bool = True
    max_chars: UInt = 50_000
    timeout_seconds: UInt = 30
    cache_ttl_minutes: UInt = 15
    max_redirects: UInt8 = 3
    readability: bool = True
    ssrf_allowlist: list[str] = msgspec.field(default_factory=list)


class FirecrawlConfig(Section):
    """`[tools.web.firecrawl]`: Firecrawl scraping, search and fetch fallback."""

    enabled: bool = False
    api_key: Secret | None = None
    base_url: str = "https://api.firecrawl.dev"
    only_main_content: bool = True
    timeout_seconds: UInt = 30
    cache_ttl_minutes: UInt = 15
    web_fetch_fallback: bool = True


class WebConfig(Section):
    """`[tools.web]`."""

    search: WebSearchConfig = msgspec.field(default_factory=WebSearchConfig)
    fetch: WebFetchConfig = msgspec.field(default_factory=WebFetchConfig)
    firecrawl: FirecrawlConfig = msgspec.field(default_factory=FirecrawlConfig)


class BrowserConfig(Section):
    """`[tools.browser]`: browser automation."""

    enabled: bool = True
    chrome_path: str | None = None
    obscura_path: str | None = None
    lightpanda_path: str | None = None
    headless: bool = True
    viewport_width: UInt32 = 2560
    viewport_height: UInt32 = 1440
    device_scale_factor: float = 2.0
    # The template's comment shows 3; Moltis's default 0 means "limited by memory only".
    max_instances: UInt = 0
    memory_limit_percent: Annotated[UInt8, expected(0, 100)] = 90  # Rust u8
    idle_timeout_secs: UInt = 300
    navigation_timeout_ms: UInt = 30_000
    user_agent: str | None = None
    chrome_args: list[str] = msgspec.field(default_factory=list)
    sandbox: bool = False
    sandbox_image: str = "docker.io/browserless/chrome"
    allowed_domains: list[str] = msgspec.field(default_factory=list)
    low_memory_threshold_mb: UInt = 2048
    persist_profile: bool = True
    profile_dir: str | None = None
    container_host: str = "127.0.0.1"
    browserless_api_version: Literal["v1", "v2"] = "v1"


class ToolsConfig(Section):
    """`[tools]`: agent loop limits and the tool sub-sections."""

    exec: ExecConfig = msgspec.field(default_factory=ExecConfig)
    policy: ToolPolicyConfig = msgspec.field(default_factory=ToolPolicyConfig)
    web: WebConfig = msgspec.field(default_factory=WebConfig)
    maps: MapsConfig = msgspec.field(default_factory=MapsConfig)
    browser: BrowserConfig = msgspec.field(default_factory=BrowserConfig)
    fs: FsToolsConfig = msgspec.field(default_factory=FsToolsConfig)
    agent_timeout_secs: UInt = 600
    agent_max_iterations: UInt = 25
    agent_max_auto_continues: UInt = 2
    agent_auto_continue_min_tool_calls: UInt = 3
    max_tool_result_bytes: UInt = 50_000
    registry_mode: Literal["full", "lazy"] = "full"
    agent_loop_detector_window: UInt = 2
    agent_loop_detector_strip_tools_on_second_fire: bool = True
    tool_result_compaction_ratio: Percent = 75
    preemptive_overflow_ratio: Percent = 90
    compaction_min_iterations: UInt = 3
