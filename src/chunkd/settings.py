"""Server settings. Every field can be set by a ``chunkd serve`` option, a ``CHUNKD_<NAME>`` variable or a key of
the TOML file named by ``--config`` / ``CHUNKD_CONFIG``; that order is also their precedence (then the default).
``docs/configuration.md`` is generated from this model (``scripts/configuration-doc``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
LOG_FORMATS = ("text", "json")


class Settings(BaseSettings):
    # extra="ignore": CHUNKD_* variables of the client (CHUNKD_TOKEN) share the prefix; chunkd serve warns of
    # unknown ones itself (chunkd.config_file.unknown_env), and a config file's unknown keys are an error
    model_config = SettingsConfigDict(env_prefix="CHUNKD_", extra="ignore")

    config: Path | None = Field(None, description="TOML file with settings (keys are these names); flags and "
                                "CHUNKD_* variables override it")

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(19080, description="port; 19080 is Service Fabric's HTTP gateway port")
    data_dir: Path = Field(Path("./chunkd-data"), description="where bytes, metadata and keys live")
    workers: int = Field(1, description="server processes sharing the port and the data directory")
    storage: str = Field("local", description="byte store: local | file:///path | s3://BUCKET[/PREFIX]?... | "
                         "azure://ACCOUNT/CONTAINER[/PREFIX]?... | memory (docs/deployment.md)")
    metadata: str = Field("sqlite", description="metadata store: sqlite | sqlite:///path | postgresql://...")
    no_auth: bool = Field(False, description="switch authentication off (loopback only unless forced)")
    force_no_auth: bool = Field(False, description="allow --no-auth on a non-loopback address")
    jwks_file: Path | None = Field(None, description="JWKS file with RS256 keys of an identity provider")
    jwt_issuer: str | None = Field(None, description="expected 'iss' of JWKS-signed tokens")
    jwt_audience: str | None = Field(None, description="expected 'aud' of JWKS-signed tokens")
    tls_cert: Path | None = Field(None, description="PEM certificate (chain) for HTTPS")
    tls_key: Path | None = Field(None, description="PEM private key for HTTPS")
    tls_client_ca: Path | None = Field(None, description="CA bundle; when set, client certificates are required")
    tls_client_auth: str = Field("required", description="with a client CA: 'required' (no certificate, no "
                                 "connection) or 'optional' (clients without one use bearer tokens)")
    tls_admin_names: str = Field("chunkd-admin", description="comma-separated client-certificate common names "
                                 "or SHA-1 thumbprints that get image-store admin rights; other certificates read")
    session_ttl: float = Field(1800.0, description="idle lifetime of an upload session, seconds")
    tombstone_ttl: float = Field(86400.0, description="how long ended sessions are remembered, seconds")
    sweep_interval: float = Field(60.0, description="seconds between expiry sweeps")
    max_size: int = Field(1 << 40, description="largest upload, bytes")
    durable: bool = Field(True, description="fdatasync every chunk before acknowledging it")
    log_level: str = Field("info", description="level of chunkd's and uvicorn's logs on stderr: "
                           + " | ".join(LOG_LEVELS))
    log_format: str = Field("text", description="log lines as 'text' or 'json' (one object per line)")
    access_log: bool = Field(False, description="one log line per request (chunkd.access): method, path with "
                             "credentials redacted, status, bytes in/out, duration, principal, request id")
    industry_session_ttl: float = Field(6 * 3600.0, description="Industry Data upload session (SAS) lifetime, seconds")
    industry_container_ttl: float = Field(48 * 3600.0, description="Industry Data container lifetime from its "
                                          "session's start, seconds (validated files stay this long)")
    blob_account: str = Field("chunkd", description="account name in blob container URLs (/{account}/{container}) "
                              "and SAS signatures: 3-24 lower-case letters and digits, not another API's path")
    tus_max_size: int | None = Field(None, description="tus: largest upload (Tus-Max-Size), bytes; default max_size")
    tus_expiration: float = Field(86400.0, description="tus: idle lifetime of an upload (Upload-Expires), seconds")
    ietf_min_size: int | None = Field(None, ge=0, description="IETF resumable-upload draft on /files/: Upload-Limit "
                                      "min-size (smallest upload created), bytes; default none")
    ietf_max_append_size: int | None = Field(None, ge=1, description="IETF draft: Upload-Limit max-append-size "
                                             "(largest append body), bytes; default none")
    ietf_min_append_size: int | None = Field(None, ge=0, description="IETF draft: Upload-Limit min-append-size "
                                             "(smallest append that does not complete the upload), bytes")
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS on /files/ and the blob "
                              "endpoint ('*' = any)")
    trust_proxy: bool = Field(False, description="without public_url, build the URLs handed out from Forwarded / "
                              "X-Forwarded-Host/Proto headers (every family)")
    public_url: str | None = Field(None, description="base of every URL handed out (tus Location, Graph uploadUrl, "
                                   "Industry Data sessionUrl): http(s)://host[:port][/path], e.g. a load balancer")
    webhook_urls: str = Field("", description="comma-separated URLs that receive upload lifecycle events (POST JSON)")
    webhook_events: str = Field("created,completed,committed,deleted,expired",
                                description="comma-separated event kinds sent to webhooks ('*' = all, incl. progress)")
    webhook_retries: int = Field(5, description="delivery attempts after the first one fails")
    webhook_backoff: float = Field(0.5, description="first retry delay, seconds; doubles on each retry")
    webhook_lease: float = Field(30.0, gt=0, description="seconds a node holds an event it delivers; a node that "
                                 "dies with it leaves it to another node after this long")
    # Connection limits (chunkd.server.limits); the defaults and why: docs/architecture.md "Connection limits".
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="largest request head (request line + header "
                                  "fields), bytes; larger heads are answered 431")
    max_headers: int = Field(100, ge=1, description="most header fields in one request; more are answered 431")
    header_timeout: float = Field(30.0, gt=0, description="seconds a connection has to complete each request head "
                                  "(from its first byte, or from connecting); then 408 and close")
    keep_alive_timeout: int = Field(75, ge=1, description="seconds an idle keep-alive connection stays open")
    max_connections: int = Field(2048, ge=1, description="open connections per server process; beyond it new "
                                 "connections are answered 503 and closed")
    # Prometheus /metrics (chunkd.server.metrics, docs/metrics.md)
    metrics: Literal["auto", "public", "auth", "off"] = Field(
        "auto", description="/metrics: public (no credential), auth (a bearer token with the Chunkd.Admin role) "
        "or off; auto is public on a loopback address without --public-url/--trust-proxy, else auth")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        from chunkd.config_file import ConfigFileSource

        # flags reach the model as CHUNKD_* variables (chunkd serve sets them): flag > env > file > default
        return init_settings, env_settings, ConfigFileSource(settings_cls)

    @property
    def webhook_targets(self) -> list[str]:
        return [u.strip() for u in self.webhook_urls.split(",") if u.strip()]

    @property
    def webhook_kinds(self) -> frozenset[str] | None:
        """The selected event kinds; None means every kind."""
        if self.webhook_events.strip() == "*":
            return None
        return frozenset(k.strip() for k in self.webhook_events.split(",") if k.strip())

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.lower()

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value.lower() not in LOG_FORMATS:
            raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}")
        return value.lower()

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be http(s)://host[:port][/path] without a query")
        return value.rstrip("/")

