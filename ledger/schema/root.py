"""`MoltisConfig`, the root of moltis.toml, and this ledger's own `[config]` section."""


from typing import Literal

import msgspec

from ledger.core.secret_refs import Secret
from ledger.schema.agents import (
    AgentsConfig,
    ExternalAgentsConfig,
    HooksConfig,
    McpConfig,
    ModesConfig,
    SkillsConfig,
)
from ledger.schema.base import Section
from ledger.schema.channels import ChannelsConfig
from ledger.schema.integrations import (
    AuxiliaryConfig,
    CalDavConfig,
    ChatConfig,
    CodeIndexConfig,
    HomeAssistantConfig,
    InstrumentationConfig,
    MemoryConfig,
    PhoneConfig,
    WebhooksConfig,
)
from ledger.schema.providers import ModelOverride, ProvidersConfig
from ledger.schema.server import (
    AuthConfig,
    CloudflareTunnelConfig,
    CronConfig,
    FailoverConfig,
    GraphqlConfig,
    HeartbeatConfig,
    IdentityConfig,
    MetricsConfig,
    NetbirdConfig,
    NgrokConfig,
    ServerConfig,
    TailscaleConfig,
    TlsConfig,
    UserConfig,
)
from ledger.schema.tools import ToolsConfig
from ledger.schema.voice import VoiceConfig

__all__ = ["ConfigSection", "MoltisConfig"]


class ConfigSection(Section):
    """`[config]`: which store holds this configuration (not a Moltis section).

    It lives in moltis.toml because that file is the one thing every installation already
    has: `backend = "sqlite"` there (or MOLTIS_CONFIG_BACKEND) switches to the ledger, and
    exporting back to a plain moltis.toml is the way back to the file store. Moltis itself
    ignores the table: `config check` reports it as an unknown key, and Moltis's own
    `update_config` saves drop it like any unknown key (MOLTIS_CONFIG_BACKEND survives).
    """

    backend: Literal["file", "sqlite", "postgres"] = "file"
    # SQLite ledger path; absent means the default file in the Moltis data directory.
    db: str | None = None
    # PostgreSQL DSN, which usually embeds a password.
    dsn: Secret | None = None
    # The ledger this file was imported into (its ledger_id, set by migrate): the
    # gateway never imports the file again into another, fresh ledger.
    ledger_id: str | None = None


class MoltisConfig(Section):
    """The whole Moltis configuration (`MoltisConfig` in crates/config/src/schema.rs)."""

    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    ngrok: NgrokConfig = msgspec.field(default_factory=NgrokConfig)
    cloudflare_tunnel: CloudflareTunnelConfig = msgspec.field(
        default_factory=CloudflareTunnelConfig
    )
    providers: ProvidersConfig = msgspec.field(default_factory=ProvidersConfig)
    # Global per-model overrides; `[providers.<n>.model_overrides.<id>]` wins over these.
    models: dict[str, ModelOverride] = msgspec.field(default_factory=dict)
    chat: ChatConfig = msgspec.field(default_factory=ChatConfig)
    auxiliary: AuxiliaryConfig = msgspec.field(default_factory=AuxiliaryConfig)
    tools: ToolsConfig = msgspec.field(default_factory=ToolsConfig)
    agents: AgentsConfig = msgspec.field(default_factory=AgentsConfig)
    modes: ModesConfig = msgspec.field(default_factory=ModesConfig)
    skills: SkillsConfig = msgspec.field(default_factory=SkillsConfig)
    mcp: McpConfig = msgspec.field(default_factory=McpConfig)
    external_agents: ExternalAgentsConfig = msgspec.field(default_factory=ExternalAgentsConfig)
    channels: ChannelsConfig = msgspec.field(default_factory=ChannelsConfig)
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    graphql: GraphqlConfig = msgspec.field(default_factory=GraphqlConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    instrumentation: InstrumentationConfig = msgspec.field(default_factory=InstrumentationConfig)
    identity: IdentityConfig = msgspec.field(default_factory=IdentityConfig)
    user: UserConfig = msgspec.field(default_factory=UserConfig)
    # Optional in Moltis too: absent and an empty `[hooks]` table are different documents.
    hooks: HooksConfig | None = None
    memory: MemoryConfig = msgspec.field(default_factory=MemoryConfig)
    tailscale: TailscaleConfig = msgspec.field(default_factory=TailscaleConfig)
    netbird: NetbirdConfig = msgspec.field(default_factory=NetbirdConfig)
    failover: FailoverConfig = msgspec.field(default_factory=FailoverConfig)
    heartbeat: HeartbeatConfig = msgspec.field(default_factory=HeartbeatConfig)
    voice: VoiceConfig = msgspec.field(default_factory=VoiceConfig)
    phone: PhoneConfig = msgspec.field(default_factory=PhoneConfig)
    cron: CronConfig = msgspec.field(default_factory=CronConfig)
    caldav: CalDavConfig = msgspec.field(default_factory=CalDavConfig)
    home_assistant: HomeAssistantConfig = msgspec.field(default_factory=HomeAssistantConfig)
    webhooks: WebhooksConfig = msgspec.field(default_factory=WebhooksConfig)
    code_index: CodeIndexConfig = msgspec.field(default_factory=CodeIndexConfig)
    # An http(s)/socks5 URL that may carry `user:pass@`.
    upstream_proxy: Secret | None = None
    # Values for `${NAME}` substitution, typically API keys.
    env: dict[str, Secret] = msgspec.field(default_factory=dict)
    config: ConfigSection = msgspec.field(default_factory=ConfigSection)
