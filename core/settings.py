"""One typed configuration for worker, exporter and CLI, read from RETENTION_* variables."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.currency import (
    Rates,
    build_rates,
    currency_code,
    merge_rates,
    parse_rates_text,
    read_rates_file,
)
from core.redis_url import RedisDeployment, parse_redis_url
from core.tls import TlsFiles, TlsSettingError, client_context, files_problem

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

BUILTIN_TYPES = frozenset(
    {
        "install",
        "app_open",
        "session",
        "purchase",
        "refund",
        "subscription_start",
        "subscription_renew",
        "subscription_cancel",
        "uninstall",
        "nps",
    }
)

# Built-in types whose events move counters beyond an active day (installs, NPS answers,
# subscriptions): the worker remembers their ids (streams/state.py FIXED_FLAGS).
FLAGGED_TYPES = frozenset(
    {"install", "nps", "subscription_start", "subscription_renew", "subscription_cancel"}
)

# Customer hashes across all shards (RETENTION_CUSTOMER_BUCKETS); many customers share
# one. 32768 keeps each a compact listpack (<= 512 customers) up to ~12M customers.
CUSTOMER_BUCKETS = 32768

# Events before this time are rejected unless RETENTION_EARLIEST_EVENT_TIME says otherwise:
# a stray epoch-seconds or 1970 value is far likelier than real history that old.
DEFAULT_EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
# The earliest the setting may go: day numbers (days since 1970-01-01) stay positive.
FLOOR_EARLIEST_EVENT_TIME = datetime(1971, 1, 1, tzinfo=UTC)

KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]

TypeSet = Annotated[frozenset[str], NoDecode]
Port = Annotated[int, Field(ge=1, le=65535)]
Thresholds = Annotated[tuple[int, int, int, int], NoDecode]


def _split(value: object) -> object:
    """Accept comma-separated strings from the environment as well as real lists."""
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    return value


TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


def kafka_security_problem(settings: Settings) -> str | None:
    """What is wrong with the combination of Kafka security settings, naming the
    variables to change (None when it is consistent)."""
    return _sasl_problem(settings) or _tls_problem(settings)


def _sasl_problem(settings: Settings) -> str | None:
    """A SASL protocol needs a mechanism and its credentials; any other protocol would
    silently ignore SASL settings, so they are refused there."""
    protocol = f"RETENTION_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}"
    mechanism = settings.kafka_sasl_mechanism
    token = settings.kafka_sasl_oauth_token_file
    password = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_security_protocol not in SASL_PROTOCOLS:
        given = {
            "RETENTION_KAFKA_SASL_MECHANISM": mechanism,
            "RETENTION_KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
            "RETENTION_KAFKA_SASL_PASSWORD": password,
            "RETENTION_KAFKA_SASL_OAUTH_TOKEN_FILE": token,
        }
        named = [name for name, value in given.items() if value]
        return f"{named[0]} is ignored with {protocol}: use SASL_SSL" if named else None
    if mechanism is None:
        return f"RETENTION_KAFKA_SASL_MECHANISM is required with {protocol}"
    if mechanism == "OAUTHBEARER":
        if token is None:
            return "RETENTION_KAFKA_SASL_OAUTH_TOKEN_FILE is required with OAUTHBEARER"
        missing = not token.is_file()
        return f"RETENTION_KAFKA_SASL_OAUTH_TOKEN_FILE: no file {token}" if missing else None
    if not settings.kafka_sasl_username:
        return f"RETENTION_KAFKA_SASL_USERNAME is required with {mechanism}"
    return None if password else f"RETENTION_KAFKA_SASL_PASSWORD is required with {mechanism}"


def _tls_problem(settings: Settings) -> str | None:
    """TLS files only with a TLS protocol, and a client certificate with its key."""
    protocol = f"RETENTION_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}"
    enabled = settings.kafka_security_protocol in TLS_PROTOCOLS
    return files_problem(settings.kafka_tls, enabled, f"with {protocol}: use SSL or SASL_SSL")


def redis_security_problem(settings: Settings) -> str | None:
    """The login given once (each of username and password in the URL or in its
    variable, not both: two values would leave a reader guessing which one is used), and
    TLS files only with a TLS URL."""
    deployment = parse_redis_url(settings.redis_url)
    if deployment.username is not None and settings.redis_username:
        return "RETENTION_REDIS_USERNAME is set and RETENTION_REDIS_URL has a user too: keep one"
    if deployment.password is not None and settings.redis_password.get_secret_value():
        return (
            "RETENTION_REDIS_PASSWORD is set and RETENTION_REDIS_URL has a password too: "
            "keep one (the variable keeps it out of the URL)"
        )
    hint = (
        "with a RETENTION_REDIS_URL without TLS: "
        "use rediss://, rediss+cluster:// or rediss+sentinel://"
    )
    return files_problem(settings.redis_tls, deployment.tls, hint)


def _load(files: TlsFiles) -> None:
    """Load the TLS files once, so that a bad file stops the start naming its setting."""
    try:
        client_context(files)
    except TlsSettingError as exc:
        raise ValueError(str(exc)) from None


class Settings(BaseSettings):
    """Everything tunable about the tracker; defaults match the local stack."""

    # errors never echo the input: it holds passwords
    model_config = SettingsConfigDict(
        env_prefix="RETENTION_", frozen=True, hide_input_in_errors=True
    )

    # The local stack's ports (retention/stack), all on 127.0.0.1 and away from the
    # services' usual ports so that a system Redis or Prometheus never collides with them.
    kafka_port: Port = 19092
    kafka_controller_port: Port = 19093
    # the stack broker's second listener: TLS with SCRAM users (README "Security")
    kafka_sasl_ssl_port: Port = 19097
    redis_port: Port = 16379
    prometheus_port: Port = 19090
    # 9093 and 9094 are Alertmanager's usual web and cluster ports; 19093 is Kafka's
    # controller above
    alertmanager_port: Port = 19095
    # where `prometheus/alert_log.py --port` listens for Alertmanager's webhook
    webhook_port: Port = 19096
    exporter_port: Port = 18000
    worker_web_port: Port = 6066
    worker_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 18001  # 0 = not served

    # Addresses left unset point at the local stack's ports (see _local_addresses).
    kafka_bootstrap: str = ""
    # a standalone server (redis://, rediss://, unix://), a cluster by seed nodes
    # (redis+cluster://h1:p1,h2:p2) or a Sentinel service (redis+sentinel://h1:p1/name/db):
    # core/redis_url.py
    redis_url: str = Field("", repr=False)  # may hold a password
    alertmanager_webhook_url: str = ""

    # How every Kafka client of the project connects (core/kafka.py turns these into
    # aiokafka options). SASL_* protocols authenticate with a mechanism; SSL and
    # SASL_SSL encrypt and verify the broker against the CA file (or the system's CAs).
    kafka_security_protocol: KafkaProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaMechanism | None = None
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    # OAUTHBEARER: a file holding the current token, read again at every authentication
    # so that whatever renews it (a sidecar, a cron job) is picked up without a restart
    kafka_sasl_oauth_token_file: Path | None = None
    kafka_ssl_cafile: Path | None = None
    # a client certificate for brokers that require one (mutual TLS); PEM, with its key
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True

    # How every Redis client logs in and encrypts (core/redis_client.py), for all three
    # URL forms. The ACL user and password may be in RETENTION_REDIS_URL or in these
    # variables (each in one place only); TLS is on for rediss://, rediss+cluster:// and
    # rediss+sentinel:// URLs and verifies the server against the CA file (or the
    # system's CAs), presenting a client certificate when one is set.
    redis_username: str = ""
    redis_password: SecretStr = SecretStr("")
    redis_ssl_cafile: Path | None = None
    redis_ssl_certfile: Path | None = None
    redis_ssl_keyfile: Path | None = None
    redis_ssl_key_password: SecretStr | None = None
    redis_ssl_check_hostname: bool = True

    namespace: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] = "rt"
    events_topic: str = "events"
    dlq_topic: str = "events.dlq"
    lifecycle_topic: str = "customer-lifecycle"
    group_id: str = "retention-worker"
    events_partitions: Annotated[int, Field(ge=1)] = 4

    shards: Annotated[int, Field(ge=1, le=16384)] = 4
    customer_buckets: Annotated[int, Field(ge=1, le=1 << 24)] = CUSTOMER_BUCKETS
    timezone: str = "UTC"
    week_start: str = "monday"
    churn_window_days: Annotated[int, Field(ge=1, le=366)] = 30
    # days a subscription stays live after its billing period ends without a renewal
    subscription_grace_days: Annotated[int, Field(ge=0, le=366)] = 7
    allowed_lateness_seconds: Annotated[int, Field(ge=0)] = 0
    cohorts_kept: Annotated[int, Field(ge=1, le=400)] = 12

    activity_types: TypeSet = frozenset(
        {"install", "app_open", "session", "purchase", "subscription_start", "subscription_renew"}
    )
    churn_types: TypeSet = frozenset({"uninstall", "subscription_cancel"})
    purchase_types: TypeSet = frozenset({"purchase"})
    custom_types: TypeSet = frozenset()
    refund_types: TypeSet = frozenset({"refund"})

    nps_window_days: Annotated[int, Field(ge=1, le=366)] = 30
    quick_churn_days: Annotated[int, Field(ge=1)] = 7
    clv_max_lifespan_years: Annotated[float, Field(gt=0)] = 5.0
    rfm_recency_days: Thresholds = (7, 14, 30, 60)
    rfm_frequency: Thresholds = (2, 3, 5, 10)
    rfm_monetary: Thresholds = (50, 150, 500, 1500)
    rfm_new_days: Annotated[int, Field(ge=1)] = 14
    dimension_cap: Annotated[int, Field(ge=1, le=100)] = 10
    at_risk_days: Annotated[tuple[int, ...], NoDecode] = (2, 7)

    # Money is summed in one reporting currency (ISO 4217). Amounts in another currency
    # are converted on ingest with the rate table: units of the reporting currency per
    # unit of the other, e.g. `EUR=1.08,JPY=0.0067` (core/currency.py), and/or a JSON or
    # CSV file of the same. A currency without a rate is dead-lettered.
    currency: str = "USD"
    currency_rates_file: Path | None = None
    # after validation: both sources merged, the reporting currency at 1
    currency_rates: Annotated[Rates, NoDecode] = Field(default_factory=dict, validate_default=True)

    max_event_bytes: Annotated[int, Field(ge=256)] = 65536
    # events before this time are rejected (naive times are UTC); replaying older history
    # on purpose means setting it earlier, e.g. 1997-01-01
    earliest_event_time: datetime = DEFAULT_EARLIEST_EVENT_TIME
    max_future_seconds: Annotated[int, Field(ge=0)] = 86400
    # largest accepted `amount`: totals are kept in integer thousandths, exact while
    # a shard's sum stays below 2**53 thousandths (9e12 currency units)
    max_amount: Annotated[float, Field(gt=0, le=1e12)] = 1e9
    # events may be this far ahead of the wall clock before the watermark stops following
    max_clock_skew_seconds: Annotated[int, Field(ge=0)] = 300
    # retention.ms of the events topic when the project creates it (-1 = keep forever):
    # state is rebuilt from this history after a loss or a settings change
    events_retention_ms: Annotated[int, Field(ge=-1)] = -1
    batch_max_events: Annotated[int, Field(ge=1)] = 5000
    batch_timeout_ms: Annotated[int, Field(ge=1)] = 200
    # lifecycle sweeps run at most this often while the worker has batches queued
    # (catching up); an idle worker sweeps at once
    lifecycle_interval_ms: Annotated[int, Field(ge=0)] = 1000
    # one worker at a time publishes a shard's lifecycle changes; a worker that stalls
    # (or dies) holding a shard longer than this loses it to the next, which publishes
    # the same changes again (streams/lifecycle.py)
    lifecycle_lock_ms: Annotated[int, Field(ge=1000)] = 30000
    # replication of the topics the project creates (events, dead letters, lifecycle,
    # Faust's own); min.insync.replicas is left to the broker's default when unset
    topic_replication_factor: Annotated[int, Field(ge=1, le=32767)] = 1
    topic_min_insync_replicas: Annotated[int | None, Field(ge=1, le=32767)] = None

    exporter_host: str = "127.0.0.1"
    # TLS and basic auth of /metrics, in the web config format of Prometheus's
    # exporter-toolkit (tls_server_config, basic_auth_users with bcrypt hashes);
    # unset = plain HTTP, no auth (metrics/webconfig.py)
    exporter_web_config_file: Path | None = None
    # requests served at once; a connection arriving while all are busy is closed at once
    exporter_threads: Annotated[int, Field(ge=1, le=256)] = 8
    # the longest one request (TLS handshake, request, response) may hold a thread
    exporter_request_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 15.0
    # a scrape within this long of the last collection is served its result; 0 = each
    # scrape collects, and scrapes arriving during a collection wait for it and share it
    exporter_scrape_max_age_seconds: Annotated[float, Field(ge=0, le=3600)] = 0.0
    # the exporter's Redis client: socket timeout and connection cap
    exporter_redis_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 10.0
    exporter_redis_max_connections: Annotated[int, Field(ge=1, le=1024)] = 4
    state_dir: Path = Path(".stack/worker")

    _split_types = field_validator(
        "activity_types",
        "churn_types",
        "purchase_types",
        "custom_types",
        "refund_types",
        mode="before",
    )(_split)

    @model_validator(mode="before")
    @classmethod
    def _local_addresses(cls, data: object) -> object:
        """Point the addresses not given explicitly at the local stack, so that changing
        one port (RETENTION_KAFKA_PORT=...) moves the stack and every client with it."""
        if not isinstance(data, dict):
            return data

        def port(name: str) -> object:
            return data.get(name, cls.model_fields[name].default)

        defaults = {
            "kafka_bootstrap": f"127.0.0.1:{port('kafka_port')}",
            "redis_url": f"redis://127.0.0.1:{port('redis_port')}/0",
            "alertmanager_webhook_url": f"http://127.0.0.1:{port('webhook_port')}/alerts",
        }
        unset = {name: value for name, value in defaults.items() if not data.get(name)}
        return {**data, **unset}

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        """Refuse Kafka security settings that contradict each other or would be silently
        ignored; then load the TLS files once, so a bad file stops the start here."""
        problem = kafka_security_problem(self)
        if problem:
            raise ValueError(problem)
        if self.kafka_security_protocol in TLS_PROTOCOLS:
            _load(self.kafka_tls)
        return self

    @model_validator(mode="after")
    def _redis_security(self) -> Settings:
        """The same for Redis: one login, TLS files only with a TLS URL, loaded once."""
        problem = redis_security_problem(self)
        if problem:
            raise ValueError(problem)
        if self.redis_deployment.tls:
            _load(self.redis_tls)
        return self

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> Settings:
        """A topic cannot require more in-sync replicas than it has: every write to it
        would be refused."""
        needed, replicas = self.topic_min_insync_replicas, self.topic_replication_factor
        if needed is not None and needed > replicas:
            raise ValueError(
                f"RETENTION_TOPIC_MIN_INSYNC_REPLICAS={needed} exceeds "
                f"RETENTION_TOPIC_REPLICATION_FACTOR={replicas}: every write to the topics "
                "would be refused; use at most the replication factor (commonly RF 3, min 2)"
            )
        return self

    @property
    def topic_configs(self) -> dict[str, str]:
        """Configs every topic the project creates gets, beside its own."""
        if self.topic_min_insync_replicas is None:
            return {}
        return {"min.insync.replicas": str(self.topic_min_insync_replicas)}

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parse_redis_url(value)  # a ValueError names what is wrong with it
        return value

    @field_validator(
        "rfm_recency_days", "rfm_frequency", "rfm_monetary", "at_risk_days", mode="before"
    )
    @classmethod
    def _thresholds(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(int(part) for part in value.split(","))
        if isinstance(value, tuple | list) and list(value) != sorted(value):
            raise ValueError("thresholds must be given in increasing order")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name like UTC") from None
        return value

    @field_validator("week_start")
    @classmethod
    def _weekday(cls, value: str) -> str:
        if value.lower() not in WEEKDAYS:
            raise ValueError(f"week_start must be one of {', '.join(WEEKDAYS)}")
        return value.lower()

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return currency_code(value)

    @field_validator("currency_rates_file")
    @classmethod
    def _rates_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_rates_file(value)  # a bad file stops the start, named by its own setting
        return value

    @field_validator("currency_rates", mode="before")
    @classmethod
    def _rates(cls, value: object, info: ValidationInfo) -> object:
        """Both rate sources in one checked table; left alone when the currency or the
        file already failed (their own errors say why)."""
        if isinstance(value, str):
            inline = parse_rates_text(value)
        elif isinstance(value, dict):
            inline = build_rates(value.items(), "RETENTION_CURRENCY_RATES")
        else:
            return value
        if "currency" not in info.data or "currency_rates_file" not in info.data:
            return inline
        path = info.data["currency_rates_file"]
        from_file = read_rates_file(path) if path is not None else {}
        return merge_rates(info.data["currency"], inline, from_file)

    @field_validator("earliest_event_time", mode="before")
    @classmethod
    def _iso_time(cls, value: object) -> object:
        """ISO 8601 text only (`1997-01-01`, `19970101`, `1997-01-01T00:00:00Z`): a bare
        number would be read as epoch seconds, the very mistake this setting is about."""
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(f"{value!r} is not an ISO 8601 date or time") from None
        if isinstance(value, datetime):
            return value
        raise ValueError(f"{value!r} is not an ISO 8601 date or time, e.g. 1997-01-01")

    @field_validator("earliest_event_time")
    @classmethod
    def _after_floor(cls, value: datetime) -> datetime:
        value = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
        if value < FLOOR_EARLIEST_EVENT_TIME:
            raise ValueError(f"must be {FLOOR_EARLIEST_EVENT_TIME:%Y-%m-%d} or later")
        return value

    @cached_property
    def earliest_event_ms(self) -> int:
        return int(self.earliest_event_time.timestamp() * 1000)

    @property
    def redis_deployment(self) -> RedisDeployment:
        """The standalone server, cluster or Sentinel service RETENTION_REDIS_URL names
        (parsed on each use: a cached copy would outlive `model_copy(update=...)`)."""
        return parse_redis_url(self.redis_url)

    @property
    def kafka_tls(self) -> TlsFiles:
        """The RETENTION_KAFKA_SSL_* settings (core/tls.py)."""
        key_password = self.kafka_ssl_key_password
        return TlsFiles(
            "RETENTION_KAFKA",
            self.kafka_ssl_cafile,
            self.kafka_ssl_certfile,
            self.kafka_ssl_keyfile,
            key_password.get_secret_value() if key_password else None,
            self.kafka_ssl_check_hostname,
        )

    @property
    def redis_tls(self) -> TlsFiles:
        """The RETENTION_REDIS_SSL_* settings (core/tls.py)."""
        key_password = self.redis_ssl_key_password
        return TlsFiles(
            "RETENTION_REDIS",
            self.redis_ssl_cafile,
            self.redis_ssl_certfile,
            self.redis_ssl_keyfile,
            key_password.get_secret_value() if key_password else None,
            self.redis_ssl_check_hostname,
        )

    @cached_property
    def known_types(self) -> frozenset[str]:
        return BUILTIN_TYPES | self.custom_types

    @cached_property
    def pure_activity_types(self) -> frozenset[str]:
        """Types whose only effect is an active day: idempotent through the day bitmap, so
        their ids are not remembered and one counts in retention_events_total only when
        it makes the customer's day active."""
        other = self.churn_types | self.purchase_types | self.refund_types | FLAGGED_TYPES
        return self.activity_types - other

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    @property
    def week_start_index(self) -> int:
        """Monday is 0, as in datetime.weekday()."""
        return WEEKDAYS.index(self.week_start)
