"""Settings: TOML file plus environment overrides, validated once at start into frozen objects.

A bad file stops start-up with the full path of the offending key (`smtp.port: ...`) and exit
code 2 (see `ConfigError`). Secrets are `SecretStr`, so they never show in reprs or logs.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "HUB_DATABASE_URL": ("database", "url"),
    "HUB_REDIS_URL": ("redis", "url"),
    "HUB_HTTP_PORT": ("http", "port"),
    "HUB_SMTP_PORT": ("smtp", "port"),
}

Port = Annotated[int, Field(ge=0, le=65535)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSection(Section):
    public_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8080")
    data_dir: Path = Path("data")
    secret_key: SecretStr = SecretStr("")  # empty: generated once and kept in data_dir
    reopen_window_days: int = Field(default=14, ge=0)
    survey_days: int = Field(default=7, ge=0)  # a digit reply this long after the notice rates
    default_language: str = "en"
    languages: tuple[str, ...] = ("en", "es")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_reply_attachment_bytes: int = Field(default=5_242_880, ge=1024)  # per file staff send
    # Embedded mode: the spool worker, delivery and upkeep run in a child of `hub serve`
    # (hub.workprocess), on the other core, so answering senders never waits for that work.
    work_process: bool = True


class DatabaseSection(Section):
    url: str = "sqlite+aiosqlite:///hub.db"
    migrate_on_start: bool = True
    pool_size: int = Field(default=10, ge=1)

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class RedisSection(Section):
    url: str = ""
    queue_prefix: str = "hub"

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be empty or start with redis://, rediss:// or unix://")
        return value


class HttpSection(Section):
    host: str = "127.0.0.1"
    port: Port = 8080
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    trusted_proxies: tuple[str, ...] = ()
    metrics_allow: tuple[str, ...] = ()  # addresses or CIDR networks; empty: /metrics is open
    metrics_token: SecretStr = SecretStr("")  # when set, `Authorization: Bearer <it>` may read
    body_timeout_seconds: float = Field(default=30.0, gt=0)  # a slower request body gets 408

    @field_validator("trusted_proxies", "metrics_allow")
    @classmethod
    def _ip_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return value


class SmtpSection(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 2525
    max_message_bytes: int = Field(default=26_214_400, ge=1024)
    max_attachment_bytes: int = Field(default=10_485_760, ge=1024)
    max_attachments: int = Field(default=50, ge=0)
    domains: tuple[str, ...] = ("city.example",)
    inboxes: dict[str, str] = Field(default_factory=dict)  # address -> default queue
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @field_validator("tls_cert", "tls_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("domains")
    @classmethod
    def _lower_domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.lower() for d in value)


class EmailSection(Section):
    from_: str = Field(default="City Hall <help@city.example>", alias="from")
    relay_host: str = "127.0.0.1"
    relay_port: Port = 25
    relay_username: str = ""
    relay_password: SecretStr = SecretStr("")
    relay_starttls: bool = False
    relay_timeout_seconds: float = Field(default=30.0, gt=0)
    acknowledge: bool = True

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("from_")
    @classmethod
    def _an_address(cls, value: str) -> str:
        from email.utils import getaddresses

        pairs = getaddresses([value])
        address = pairs[0][1] if len(pairs) == 1 else ""
        local, _, domain = address.rpartition("@")
        if not local or "." not in domain or any(c.isspace() for c in address):
            raise ValueError(f"{value!r} is not an email address; write it as "
                             '"City Hall <help@city.example>" or "help@city.example"')
        return value


class TwilioSection(Section):
    account_sid: str = ""
    auth_token: SecretStr = SecretStr("")
    from_number: str = ""
    api_base_url: str = ""


class SmsSection(Section):
    help_text: str = ("City Hall: text us your request and we will answer here. "
                      "Reply STOP to stop texts, START to receive them again.")
    max_segments: int = Field(default=10, ge=1, le=10)  # Twilio sends at most 1600 characters
    max_media_bytes: int = Field(default=5_242_880, ge=1024)  # per MMS media file
    acknowledge: bool = True


class TelegramSection(Section):
    token: SecretStr = SecretStr("")
    secret_token: SecretStr = SecretStr("")
    mode: Literal["webhook", "polling"] = "webhook"
    api_base_url: str = ""
    max_file_bytes: int = Field(default=20_971_520, ge=1024)  # per file; the Bot API serves 20 MB
    poll_seconds: int = Field(default=25, ge=0, le=50)  # getUpdates long-poll timeout
    acknowledge: bool = True


class RoutingSection(Section):
    rules_dir: Path = Path("routing_rules")
    default_queue: str = "general"
    watch: bool = True
    sla_risk_minutes: int = Field(default=60, ge=0)  # a pending timer this close is "at risk"


class OutboxSection(Section):
    max_attempts: int = Field(default=8, ge=1)
    backoff_base_seconds: float = Field(default=5.0, ge=0)
    backoff_max_seconds: float = Field(default=3600.0, ge=0)
    backoff_jitter: float = Field(default=0.2, ge=0, le=1)
    sweep_interval_seconds: float = Field(default=15.0, gt=0)
    stale_after_seconds: float = Field(default=120.0, gt=0)


class SpoolSection(Section):
    quiet_ms: int = Field(default=50, ge=0)
    max_delay_seconds: float = Field(default=0.25, ge=0)
    # An MTA queues what its disk holds; this bounds how far work may fall behind (minutes).
    max_backlog: int = Field(default=100_000, ge=1)
    keep_days: int = Field(default=7, ge=1)
    # Parsing runs in child processes (0: on a thread, without an enforced time budget).
    parse_processes: int = Field(default=1, ge=0, le=64)
    parse_seconds: float = Field(default=10.0, gt=0)


class SecuritySection(Section):
    session_hours: int = Field(default=12, ge=1)
    api_rate_per_minute: int = Field(default=600, ge=1)
    # per client address, on citizen form posts and tracking pages (hub.web.citizen.guard)
    citizen_rate_per_minute: int = Field(default=30, ge=1)
    max_login_attempts: int = Field(default=10, ge=1)


_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")


class WebchatSection(Section):
    """The web chat widget and its protocol (adapters/webchat)."""

    enabled: bool = True
    allowed_origins: tuple[str, ...] = ()  # sites that may embed widget.js and open /chat/ws
    max_body: int = Field(default=2000, ge=1, le=100_000)  # characters of one chat message
    per_minute: int = Field(default=20, ge=1)  # messages per visitor per minute
    per_ip_per_minute: int = Field(default=60, ge=1)  # messages per client address per minute
    max_connections_per_ip: int = Field(default=20, ge=1)
    max_file_bytes: int = Field(default=5_000_000, ge=1024)  # one attachment (image or PDF)
    consent_text: str = ""  # shown on the pre-chat form; empty: a built-in text per language
    away_after_seconds: int = Field(default=60, ge=0)  # then replies go by email/SMS if given

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from urllib.parse import urlsplit

        cleaned = []
        for origin in value:
            parts = urlsplit(origin.strip())
            # The origins go into a Content-Security-Policy (frame-ancestors): a host[:port]
            # and nothing else, so no `;` or space can add a directive of its own.
            if parts.scheme not in ("http", "https") or not _HOST_PORT.match(parts.netloc) \
                    or parts.path not in ("", "/") or parts.query or parts.fragment:
                raise ValueError(f"{origin!r} is not an origin; write it as "
                                 '"https://www.city.example"')
            cleaned.append(f"{parts.scheme}://{parts.netloc}".lower())
        return tuple(cleaned)


class CitizenSection(Section):
    """Citizen pages' options (hub.web.citizen): the on-premise map behind "Use my location"."""

    # A tile server of the city's own, e.g. "https://tiles.city.internal/{z}/{x}/{y}.png";
    # empty: no map, only the button and typed coordinates (no tile CDN is ever used).
    map_tiles_url: str = ""
    map_center: tuple[float, float] = (40.7128, -74.006)  # latitude, longitude shown first
    map_zoom: int = Field(default=15, ge=1, le=19)
    map_attribution: str = ""  # e.g. "© OpenStreetMap contributors", shown under the map

    @field_validator("map_tiles_url")
    @classmethod
    def _tiles(cls, value: str) -> str:
        from urllib.parse import urlsplit

        value = value.strip()
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or any(
                key not in value for key in ("{z}", "{x}", "{y}")):
            raise ValueError(f"{value!r}: write an http(s) URL with {{z}}, {{x}} and {{y}}, "
                             'e.g. "https://tiles.city.internal/{z}/{x}/{y}.png"')
        return value

    @field_validator("map_center")
    @classmethod
    def _center(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not (-85 <= value[0] <= 85 and -180 <= value[1] <= 180):
            raise ValueError("map_center is [latitude, longitude] (-85..85, -180..180)")
        return value

    @property
    def tiles_origin(self) -> str:
        """The tile server's origin, for the form pages' Content-Security-Policy."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.map_tiles_url)
        return f"{parts.scheme}://{parts.netloc}" if self.map_tiles_url else ""


class TransparencySection(Section):
    """The public figures page, `GET /transparency` (hub.web.citizen.transparency)."""

    enabled: bool = False  # off: the page is 404 and the portal does not link it
    min_group: int = Field(default=5, ge=1)  # figures of fewer conversations are not shown


class Settings(Section):
    hub: HubSection = HubSection()
    database: DatabaseSection = DatabaseSection()
    redis: RedisSection = RedisSection()
    http: HttpSection = HttpSection()
    smtp: SmtpSection = SmtpSection()
    email: EmailSection = EmailSection()
    twilio: TwilioSection = TwilioSection()
    sms: SmsSection = SmsSection()
    telegram: TelegramSection = TelegramSection()
    routing: RoutingSection = RoutingSection()
    outbox: OutboxSection = OutboxSection()
    spool: SpoolSection = SpoolSection()
    security: SecuritySection = SecuritySection()
    transparency: TransparencySection = TransparencySection()
    citizen: CitizenSection = CitizenSection()
    webchat: WebchatSection = WebchatSection()

    @property
    def embedded(self) -> bool:
        return not self.redis.url


class ConfigError(Exception):
    """A configuration problem, phrased for the person who wrote the file."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> None:
    for var, (section, key) in ENV_OVERRIDES.items():
        if environ.get(var):
            data.setdefault(section, {})[key] = environ[var]


_EXAMPLES = {"smtp.domains": 'a list of domains, e.g. ["city.example"]',
             "hub.languages": 'a list of language codes, e.g. ["en", "es"]'}


def _describe(error: ValidationError, source: str) -> list[str]:
    problems = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"] if p != "from_") or "(top level)"
        if item["loc"] and item["loc"][-1] == "from_":
            path = f"{path}.from" if path != "(top level)" else "from"
        problems.append(f"{source}: {path}: {_plain(item, path)}")
    return problems


def _plain(item: Any, path: str) -> str:
    """Pydantic's message, in the words of someone editing a TOML file."""
    kind = item["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("tuple_type", "list_type", "set_type"):
        return "should be " + _EXAMPLES.get(path, f"a list, e.g. [{item['input']!r}]")
    if kind == "dict_type":
        return 'should be a table, e.g. { "roads@city.example" = "roads" }'
    message = str(item["msg"])
    return message.removeprefix("Value error, ")


def _resolve_paths(data: dict[str, Any], folder: Path) -> None:
    """Relative paths in a config file mean: next to the file, wherever the command runs."""
    for section, key in (("hub", "data_dir"), ("routing", "rules_dir"), ("smtp", "tls_cert"),
                         ("smtp", "tls_key")):
        value = data.get(section, {}).get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            data[section][key] = str(folder / value)
    url = data.get("database", {}).get("url")
    if isinstance(url, str) and url.startswith("sqlite"):
        prefix, _, database = url.partition(":///")
        if database and database != ":memory:" and not Path(database).is_absolute():
            data["database"]["url"] = f"{prefix}:///{folder / database}"


def _check_folders(data: dict[str, Any], source: str) -> None:
    rules_dir = data.get("routing", {}).get("rules_dir")
    if isinstance(rules_dir, str) and not Path(rules_dir).is_dir():
        raise ConfigError([f"{source}: routing.rules_dir: no folder at {rules_dir}"])


def load_settings(path: str | os.PathLike[str] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Read, override and validate. No path and no HUB_CONFIG: built-in embedded defaults."""
    env = dict(os.environ if environ is None else environ)
    chosen = path or env.get("HUB_CONFIG") or None
    data: dict[str, Any] = {}
    source = "defaults"
    if chosen:
        source = str(chosen)
        try:
            data = tomllib.loads(Path(chosen).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"{source}: file not found"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{source}: cannot read: {exc}"]) from None
        _resolve_paths(data, Path(chosen).resolve().parent)
        _check_folders(data, source)
    _apply_env(data, env)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
