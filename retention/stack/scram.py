"""The stack broker's SASL users: one user, its password, and SCRAM credentials for it.

Kafka keeps SCRAM credentials in its metadata log, so they are created through the
broker's admin API (AlterUserScramCredentials, KIP-554) over the PLAINTEXT listener once
the broker is ready: that works on a fresh data directory and on one formatted before the
SASL_SSL listener existed. aiokafka's admin client has no call for it, so the request is
declared here with aiokafka's own protocol types; the salted password is PBKDF2 as in
RFC 5802, which is what Kafka's own admin client sends.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)
from pydantic import SecretStr

from retention.stack import certs, passwords
from retention.stack.settings import StackError, StackSettings
from retention.status import kafka_check

USER = "retention"
ITERATIONS = 8192  # Kafka accepts 4096 to 16384
# Kafka's ScramMechanism type codes and the hash each one uses
MECHANISMS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
TIMEOUT = 15.0


# (name, mechanism, iterations, salt, salted password, tagged fields)
Upsertion = tuple[str, int, int, bytes, bytes, dict[int, bytes]]

# aiokafka's protocol classes are untyped for mypy; the names follow aiokafka's own.


class AlterUserScramCredentialsResponse_v0(Response):  # type: ignore[misc]
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest_v0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("tags", TaggedFields),
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest(
    Request[AlterUserScramCredentialsRequest_v0]  # type: ignore[misc]
):
    API_KEY = 51

    def __init__(self, upsertions: list[Upsertion]) -> None:
        self.upsertions = upsertions

    def build(
        self, request_struct_class: type[AlterUserScramCredentialsRequest_v0]
    ) -> AlterUserScramCredentialsRequest_v0:
        return request_struct_class([], self.upsertions, {})


def password_file(stack: StackSettings) -> Path:
    return stack.service_dir("kafka") / "sasl.password"


def password(stack: StackSettings) -> str:
    """The stack user's password: made once per state directory, readable only by us."""
    return passwords.generated(password_file(stack))


def upsertion(
    name: str, secret: str, mechanism: str
) -> tuple[str, int, int, bytes, bytes, dict[int, bytes]]:
    """One user's credential for one mechanism: a fresh salt and Hi(password, salt, i)."""
    code, digest = MECHANISMS[mechanism]
    salt = secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac(digest, secret.encode(), salt, ITERATIONS)
    return (name, code, ITERATIONS, salt, salted, {})


async def _upsert(bootstrap: str, name: str, secret: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(TIMEOUT * 1000))
    try:
        await asyncio.wait_for(admin.start(), TIMEOUT)
        results = []
        # one request per mechanism: Kafka refuses two changes of one user in a request
        for mechanism in MECHANISMS:
            request = AlterUserScramCredentialsRequest([upsertion(name, secret, mechanism)])
            response = await asyncio.wait_for(admin._send_request(request), TIMEOUT)
            results.extend(response.results)
    finally:
        await admin.close()
    failed = [(user, code, text) for user, code, text, _ in results if code != 0]
    if failed:
        raise StackError(f"kafka: SCRAM credentials for {name!r} refused: {failed}")


def create_users(stack: StackSettings) -> None:
    """Give the stack user SCRAM-SHA-256 and SCRAM-SHA-512 credentials for its password
    (again on each start: the same password under a new salt), then wait until the
    SASL_SSL listener lets it in: the broker applies the credentials a moment after the
    controller accepts them, and a listener that does not work should fail `up`."""
    asyncio.run(_upsert(f"127.0.0.1:{stack.kafka_port}", USER, password(stack)))
    deadline = time.monotonic() + stack.stack_start_timeout
    while not (found := asyncio.run(kafka_check(_as_client(stack)))).ok:
        if time.monotonic() > deadline:
            raise StackError(f"kafka: SASL_SSL does not admit {USER!r}: {found.detail}")
        time.sleep(0.3)


def _as_client(stack: StackSettings) -> StackSettings:
    """The stack's settings as a client of the SASL_SSL listener logging in as USER."""
    client = client_env(stack, certs.Certificates(certs.certs_dir(stack)).ca)
    as_client = {k.removeprefix("RETENTION_").lower(): v for k, v in client.items()}
    return stack.model_copy(
        update={
            **as_client,
            "kafka_sasl_password": SecretStr(password(stack)),
            "kafka_ssl_cafile": Path(client["RETENTION_KAFKA_SSL_CAFILE"]),
            "kafka_ssl_certfile": None,
            "kafka_ssl_keyfile": None,
        }
    )


def client_env(stack: StackSettings, certs_ca: Path) -> dict[str, str]:
    """RETENTION_* variables of a client using the stack's SASL_SSL listener as USER;
    the password is left out (it is in password_file)."""
    return {
        "RETENTION_KAFKA_BOOTSTRAP": f"127.0.0.1:{stack.kafka_sasl_ssl_port}",
        "RETENTION_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "RETENTION_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "RETENTION_KAFKA_SASL_USERNAME": USER,
        "RETENTION_KAFKA_SSL_CAFILE": str(certs_ca),
    }
