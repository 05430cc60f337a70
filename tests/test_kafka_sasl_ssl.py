"""The tracker against the stack broker's SASL_SSL listener (TLS with the stack's CA, SCRAM
users made by the stack): the whole pipeline end to end against the oracle, `status`, every
mechanism the listener offers, and refused credentials or certificates failing fast with
exit code 3 and a message naming the setting, never the password."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from pathlib import Path

import pytest

from core.settings import Settings
from retention.stack import certs, scram
from retention.stack.settings import StackSettings
from retention.status import kafka_check
from tests.cli_fixtures import assert_refused_fast, cli_env, run_cli, said
from tests.history import generate_history, unique_events
from tests.oracle import COMPARED, OracleSettings, compute, diff, flatten

pytestmark = pytest.mark.integration

WRONG = "wrong-Pa55word-canary"


@pytest.fixture(scope="module")
def secure(stack: None) -> dict[str, str]:
    """RETENTION_* of a client of the SASL_SSL listener as the stack's SCRAM user."""
    local = StackSettings()
    env = scram.client_env(local, certs.certs_dir(local) / "ca.pem")
    env["RETENTION_KAFKA_SASL_PASSWORD"] = scram.password(local)
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", local.kafka_sasl_ssl_port)) != 0:
            pytest.fail(
                f"nothing listens on the SASL_SSL port {local.kafka_sasl_ssl_port}: the "
                "broker was started by an older stack; `bash scripts/stack.sh restart kafka`"
            )
    return env


def unsigned_token(subject: str, lifetime: int = 3600) -> str:
    """A JWT without signature, as Kafka's unsecured OAUTHBEARER validator accepts."""

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {"sub": subject, "iat": now, "exp": now + lifetime}
    return f"{part({'alg': 'none'})}.{part(claims)}."


def check(env: dict[str, str]) -> tuple[bool, str, bool]:
    """`retention status`'s Kafka check in this process, under these variables."""
    arguments = {k.removeprefix("RETENTION_").lower(): v for k, v in env.items()}
    result = asyncio.run(kafka_check(Settings(**arguments)))
    return result.ok, result.detail, bool(result.data.get("refused"))


def test_feed_worker_exporter_over_sasl_ssl_match_the_oracle_and_status_sees_it(
    pipeline, secure: dict[str, str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Every Kafka client of the pipeline (feed, the worker's Faust app and raw clients,
    status, and this test's own) connects only through the SASL_SSL listener."""
    p = pipeline(extra_env=secure)
    events = unique_events(generate_history(seed=1414, customers=120, days=30))
    history = tmp_path / "events.jsonl"
    history.write_text("".join(json.dumps(e) + "\n" for e in events))
    env = cli_env(p)
    fed = run_cli(["feed", str(history)], env)
    assert fed.returncode == 0, fed.stderr
    p.wait_until_consumed()
    expected = compute(events, OracleSettings())
    assert len(expected) > 100  # a history big enough that a wrong number shows
    assert not diff(expected, flatten(p.scrape_text(), COMPARED)), diff(
        expected, flatten(p.scrape_text(), COMPARED)
    )

    status = run_cli(["status", "--json", "--sample", "0.5"], env, timeout=60)
    assert status.returncode == 0, said(status)
    checks = {c["name"]: c for c in json.loads(status.stdout)["checks"]}
    assert checks["kafka"]["data"]["security_protocol"] == "SASL_SSL"
    assert checks["kafka"]["data"]["bootstrap"] == secure["RETENTION_KAFKA_BOOTSTRAP"]
    assert checks["worker"]["ok"] and checks["worker"]["data"]["lag"] == 0

    password = secure["RETENTION_KAFKA_SASL_PASSWORD"]
    for output in (fed.stdout, fed.stderr, status.stdout, status.stderr, p.logs()):
        assert password not in output
    assert all(password not in proc.log.read_text() for proc in p.processes)


def test_a_wrong_password_fails_fast_with_exit_3_and_names_the_settings(
    secure: dict[str, str], tmp_path: Path
) -> None:
    history = tmp_path / "one.jsonl"
    history.write_text(json.dumps(
        {"event_id": "e1", "customer_id": "ann", "type": "install", "ts": "2026-03-02T10:00:00Z"}
    ) + "\n")  # fmt: skip
    env = cli_env(**{**secure, "RETENTION_KAFKA_SASL_PASSWORD": WRONG})
    commands = {
        "feed": ["feed", str(history)],
        "simulate": ["simulate", "--seed", "1", "--days", "3", "--installs", "5",
                     "--out", str(tmp_path / "sim")],
        "status": ["status", "--sample", "0.1"],
        "worker": ["worker"],
    }  # fmt: skip
    expected = (
        "refused authentication of user 'retention' (SCRAM-SHA-512)",
        "RETENTION_KAFKA_SASL_PASSWORD",
    )
    assert_refused_fast(commands, env, expected, [WRONG, secure["RETENTION_KAFKA_SASL_PASSWORD"]])


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_each_password_mechanism_of_the_listener(secure: dict[str, str], mechanism: str) -> None:
    ok, detail, _ = check({**secure, "RETENTION_KAFKA_SASL_MECHANISM": mechanism})
    assert ok and "(SASL_SSL)" in detail, detail
    wrong = {"RETENTION_KAFKA_SASL_MECHANISM": mechanism, "RETENTION_KAFKA_SASL_PASSWORD": WRONG}
    ok, detail, refused = check({**secure, **wrong})
    assert not ok and refused and "refused authentication" in detail, detail


def test_oauthbearer_tokens_from_a_file(secure: dict[str, str], tmp_path: Path) -> None:
    token = tmp_path / "token"
    env = {
        k: v for k, v in secure.items()
        if k not in ("RETENTION_KAFKA_SASL_USERNAME", "RETENTION_KAFKA_SASL_PASSWORD")
    }  # fmt: skip
    env |= {
        "RETENTION_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
        "RETENTION_KAFKA_SASL_OAUTH_TOKEN_FILE": str(token),
    }
    token.write_text(unsigned_token("retention", lifetime=-60))  # expired
    ok, detail, refused = check(env)
    assert not ok and refused and "RETENTION_KAFKA_SASL_OAUTH_TOKEN_FILE" in detail, detail
    token.write_text(unsigned_token("retention"))  # renewed: read at the next connection
    ok, detail, _ = check(env)
    assert ok, detail


def test_certificates_client_and_untrusted(secure: dict[str, str], tmp_path: Path) -> None:
    """A client certificate from the stack's CA is accepted (the listener checks one when
    sent); a CA that did not sign the broker's certificate is refused at the handshake."""
    where = Path(secure["RETENTION_KAFKA_SSL_CAFILE"]).parent
    ok, detail, _ = check(
        {
            **secure,
            "RETENTION_KAFKA_SSL_CERTFILE": str(where / "client.pem"),
            "RETENTION_KAFKA_SSL_KEYFILE": str(where / "client.key"),
        }
    )
    assert ok, detail
    other = certs.ensure(StackSettings(state=tmp_path))
    ok, detail, refused = check({**secure, "RETENTION_KAFKA_SSL_CAFILE": str(other.ca)})
    assert not ok and refused and "certificate failed verification" in detail, detail
    assert "RETENTION_KAFKA_SSL_CAFILE" in detail
    # the broker's certificate names localhost as well as 127.0.0.1
    port = secure["RETENTION_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1]
    ok, detail, _ = check({**secure, "RETENTION_KAFKA_BOOTSTRAP": f"localhost:{port}"})
    assert ok, detail


def test_the_stack_user_is_remade_on_a_running_broker(secure: dict[str, str]) -> None:
    """`up` against a running broker (one whose data directory predates the listener's
    users) gives the user its SCRAM credentials again: idempotent, the password unchanged."""
    local = StackSettings()
    scram.create_users(local)
    scram.create_users(local)
    ok, detail, _ = check(secure)
    assert ok, detail
