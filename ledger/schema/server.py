"""Gateway, access and scheduling sections: server, tls, auth, graphql, metrics, tunnels,
identity, user, failover, heartbeat, cron."""


from typing import Annotated

import msgspec

from ledger.core.secret_refs import Secret
from ledger.schema.base import Port, Section, UInt, UInt32, choices, expected

__all__ = [
    "ActiveHoursConfig",
    "AuthConfig",
    "CloudflareTunnelConfig",
    "CronConfig",
    "FailoverConfig",
    "GeoLocation",
    "GraphqlConfig",
    "HeartbeatConfig",
    "IdentityConfig",
    "MetricsConfig",
    "NetbirdConfig",
    "NgrokConfig",
    "ServerConfig",
    "TailscaleConfig",
    "TlsConfig",
    "UserConfig",
]


class ServerConfig(Section):
    """`[server]`: listen address, port and web UI plumbing."""

    bind: str = "127.0.0.1"
    # 0 in the schema; Moltis writes a random free port into moltis.toml on first run.
    port: Port = 0
    http_request_logs: bool = False
    ws_request_logs: bool = False
    log_buffer_size: UInt = 1000
    update_releases_url: str | None = None
    db_pool_max_connections: UInt32 = 5
    shiki_cdn_url: str | None = None
    rpc_timeout_ms: UInt = 5000
    terminal_enabled: bool = True
    external_url: str | None = None


class TlsConfig(Section):
    """`[tls]`: HTTPS with an auto-generated local CA, or custom certificate files."""

    enabled: bool = True
    auto_generate: bool = True
    cert_path: str | None = None
    key_path: str | None = None
    ca_cert_path: str | None = None
    public_ip: str | None = None
    # Absent means server.port + 1.
    http_redirect_port: Port | None = None


class AuthConfig(Section):
    """`[auth]`: password/passkey login and the secrets vault."""

    disabled: bool = False
    vault_enabled: bool = True


class GraphqlConfig(Section):
    """`[graphql]`: the /graphql HTTP and WebSocket endpoint."""

    # The template's comment shows `enabled = false`; the reference and the Rust
    # default (`GraphqlConfig::default`) say true, and the reference wins.
    enabled: bool = True


class MetricsConfig(Section):
    """`[metrics]`: metric collection and the Prometheus endpoint."""

    enabled: bool = True
    prometheus_endpoint: bool = True
    history_points: UInt = 360
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class NgrokConfig(Section):
    """`[ngrok]`: public HTTPS tunnel through ngrok."""

    enabled: bool = False
    authtoken: Secret | None = None
    domain: str | None = None


class CloudflareTunnelConfig(Section):
    """`[cloudflare_tunnel]`: public tunnel through Cloudflare."""

    enabled: bool = False
    token: Secret | None = None
    hostname: str | None = None


class TailscaleConfig(Section):
    """`[tailscale]`: expose the gateway with Tailscale Serve or Funnel."""

    # a Rust `String`; Moltis's check warns about other values
    mode: Annotated[str, choices("off", "serve", "funnel")] = "off"
    reset_on_exit: bool = True


class NetbirdConfig(Section):
    """`[netbird]`: expose the gateway on a NetBird private mesh."""

    # a Rust `String`; Moltis's check warns about other values
    mode: Annotated[str, choices("off", "serve")] = "off"


class IdentityConfig(Section):
    """`[identity]`: the agent's name and personality (IDENTITY.md front matter wins)."""

    name: str | None = None
    emoji: str | None = None
    theme: str | None = None
    soul: str | None = None


class GeoLocation(Section):
    """`[user.location]`: WGS 84 coordinates; Moltis requires both when the table exists."""

    latitude: Annotated[float, expected(-90.0, 90.0)]  # Rust f64
    longitude: Annotated[float, expected(-180.0, 180.0)]
    place: str | None = None
    # Unix epoch seconds of the last update.
    updated_at: int | None = None


class UserConfig(Section):
    """`[user]`: the operator's profile (USER.md front matter wins)."""

    name: str | None = None
    # An IANA name such as "Europe/Paris"; Moltis rejects unknown zones.
    timezone: str | None = None
    location: GeoLocation | None = None


class FailoverConfig(Section):
    """`[failover]`: automatic model/provider failover."""

    enabled: bool = True
    exact_model: bool = False
    fallback_models: list[str] = msgspec.field(default_factory=list)


class ActiveHoursConfig(Section):
    """`[heartbeat.active_hours]`: the daily window in which heartbeats run."""

    start: str = "08:00"
    end: str = "24:00"
    timezone: str = "local"


class HeartbeatConfig(Section):
    """`[heartbeat]`: the periodic health-check agent turn."""

    enabled: bool = True
    every: str = "30m"
    model: str | None = None
    agent_id: str | None = None
    prompt: str | None = None
    ack_max_chars: UInt = 300
    active_hours: ActiveHoursConfig = msgspec.field(default_factory=ActiveHoursConfig)
    deliver: bool = False
    channel: str | None = None
    to: str | None = None
    sandbox_enabled: bool = True
    sandbox_image: str | None = None
    wake_cooldown: str = "5m"


class CronConfig(Section):
    """`[cron]`: scheduler rate limits and session retention."""

    rate_limit_max: UInt = 10
    rate_limit_window_secs: UInt = 60
    # 0 disables retention pruning (Moltis: `Option<u64>` defaulting to `Some(7)`).
    session_retention_days: UInt | None = 7
    auto_prune_cron_containers: bool = True
