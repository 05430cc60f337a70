"""How every Kafka client of the project connects: aiokafka options from the settings.

Every consumer, producer and admin client (worker, feed, simulate, status, rebuild, bench,
tests) is made with `client_options(settings)`, so one set of RETENTION_KAFKA_* settings
secures them all; the Faust app gets the same options as broker credentials
(streams/app.py). `explain_failure` turns aiokafka's generic "Unable to bootstrap" into
the reason a client could not connect (refused credentials, an untrusted certificate),
never showing a password.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka.abc import AbstractTokenProvider
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from core.settings import SASL_PROTOCOLS, TLS_PROTOCOLS
from core.tls import client_context

if TYPE_CHECKING:
    from core.settings import Settings

# How long the diagnosis of a failed connection waits for the broker.
PROBE_TIMEOUT_MS = 5000


class AfterAuthentication(Exception):
    """The broker treats the client as unauthenticated right after the SASL exchange."""


class TokenFile(AbstractTokenProvider):  # type: ignore[misc]  # untyped in aiokafka
    """OAUTHBEARER tokens from a file, read at each authentication, so a renewed token
    is used from the next connection on."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def token(self) -> str:
        text = await asyncio.to_thread(self.path.read_text)
        return text.strip()


def tls_context(settings: Settings) -> ssl.SSLContext:
    """A client context that verifies the broker against the CA file (the system's CAs
    without one), presents the client certificate if one is set, and checks the
    broker's name unless RETENTION_KAFKA_SSL_CHECK_HOSTNAME is false."""
    return client_context(settings.kafka_tls)


def security_options(settings: Settings) -> dict[str, Any]:
    """The aiokafka keyword arguments for the security protocol, TLS and SASL."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in TLS_PROTOCOLS:
        options["ssl_context"] = tls_context(settings)
    mechanism = settings.kafka_sasl_mechanism
    if protocol in SASL_PROTOCOLS and mechanism is not None:
        options["sasl_mechanism"] = mechanism
        if mechanism == "OAUTHBEARER" and settings.kafka_sasl_oauth_token_file is not None:
            options["sasl_oauth_token_provider"] = TokenFile(settings.kafka_sasl_oauth_token_file)
        else:
            options["sasl_plain_username"] = settings.kafka_sasl_username
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def client_options(settings: Settings) -> dict[str, Any]:
    """Where and how to connect: pass to every AIOKafkaConsumer/Producer/AdminClient."""
    return {"bootstrap_servers": settings.kafka_bootstrap, **security_options(settings)}


@dataclass(frozen=True)
class KafkaFailure:
    """Why clients could not connect; `refused` when the broker answered but would not
    accept us (credentials, certificate): retrying does not help, the settings must change."""

    message: str
    refused: bool


async def probe(settings: Settings) -> BaseException | None:
    """Connect to the first bootstrap address as the clients do; the error, or None."""
    host, port, _ = collect_hosts(settings.kafka_bootstrap, randomize=False)[0]
    try:
        conn = await create_conn(
            host, port, request_timeout_ms=PROBE_TIMEOUT_MS, **security_options(settings)
        )
    except Exception as exc:
        return exc
    try:
        # A broker that rejects an OAUTHBEARER token says so only after aiokafka deems
        # the exchange done: it then answers the first request without even itself
        # among the brokers, and closes the connection.
        metadata = await conn.send(MetadataRequest([]))
    except Exception as exc:
        return exc
    finally:
        conn.close()
    if not metadata.brokers and settings.kafka_sasl_mechanism:
        return AfterAuthentication("it answered with empty metadata")
    return None


async def explain_failure(settings: Settings, exc: BaseException) -> KafkaFailure:
    """What went wrong when a client could not start: the broker's own answer if a
    direct connection gets one, else the client's error."""
    found = await probe(settings)
    return describe(settings, found if found is not None else exc)


def describe(settings: Settings, exc: BaseException) -> KafkaFailure:
    """A message naming the settings to check; credentials never appear in it."""
    where = f"Kafka at {settings.kafka_bootstrap} ({settings.kafka_security_protocol})"
    mechanism = settings.kafka_sasl_mechanism
    if isinstance(exc, SaslAuthenticationFailed | IllegalSaslStateError):
        who = (
            "the OAUTHBEARER token in RETENTION_KAFKA_SASL_OAUTH_TOKEN_FILE"
            if mechanism == "OAUTHBEARER"
            else f"user {settings.kafka_sasl_username!r} ({mechanism}): check "
            "RETENTION_KAFKA_SASL_USERNAME and RETENTION_KAFKA_SASL_PASSWORD"
        )
        return KafkaFailure(f"{where} refused authentication of {who} [{exc}]", True)
    if isinstance(exc, AfterAuthentication):
        return KafkaFailure(
            f"{where} did not accept the client after the {mechanism} exchange: the token "
            f"in RETENTION_KAFKA_SASL_OAUTH_TOKEN_FILE is invalid or expired [{exc}]",
            True,
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return KafkaFailure(f"{where}: RETENTION_KAFKA_SASL_MECHANISM: {exc}", True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return KafkaFailure(
            f"{where}: the broker's certificate failed verification ({exc.verify_message}); "
            "check RETENTION_KAFKA_SSL_CAFILE and RETENTION_KAFKA_SSL_CHECK_HOSTNAME",
            True,
        )
    if isinstance(exc, ssl.SSLError):
        return KafkaFailure(
            f"{where}: TLS handshake failed ({exc.reason or exc}); does this listener speak "
            "RETENTION_KAFKA_SECURITY_PROTOCOL, and does it require a client certificate "
            "(RETENTION_KAFKA_SSL_CERTFILE)?",
            True,
        )
    return KafkaFailure(f"cannot reach {where}: {exc or type(exc).__name__}", False)
