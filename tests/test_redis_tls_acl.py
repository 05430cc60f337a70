"""The tracker against the stack's secured Redis (an ACL user with a password, the default
user off, TLS with the stack's CA): the whole pipeline end to end against the oracle,
`status`, `report` and `rebuild` over TLS, and a refused login or certificate failing
fast with exit code 3 and a message naming the setting. The password never appears in
any output, log or JSON, whether it is right or wrong."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from retention.stack import certs, secure_redis
from retention.stack.settings import StackSettings
from tests.cli_fixtures import assert_refused_fast, cli_env, run_cli, said
from tests.history import generate_history, unique_events
from tests.oracle import COMPARED, OracleSettings, compute, diff, flatten
from tests.pipeline_runner import Pipeline

pytestmark = pytest.mark.integration

WRONG = "wrong-Redis-Pa55word-canary"


@pytest.fixture(scope="module")
def secure(stack: None) -> dict[str, str]:
    """RETENTION_* of a client of the secured Redis's TLS port as its ACL user."""
    local = StackSettings()
    env = secure_redis.client_env(local)
    env["RETENTION_REDIS_PASSWORD"] = secure_redis.password(local)
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", local.redis_secure_tls_port)) != 0:
            pytest.fail(f"nothing listens on port {local.redis_secure_tls_port}: stack.sh up")
    return env


def matches_oracle(p: Pipeline, events: list[dict]) -> None:
    expected = compute(events, OracleSettings())
    assert len(expected) > 100  # a history big enough that a wrong number shows
    problems = diff(expected, flatten(p.scrape_text(), COMPARED))
    assert not problems, problems


def test_pipeline_status_report_and_rebuild_over_tls_as_the_acl_user(
    pipeline, secure: dict[str, str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Worker, exporter, feed, status, report, rebuild and this test's own client all
    reach Redis only through the TLS port, logged in as the ACL user."""
    p = pipeline(extra_env=secure)
    events = unique_events(generate_history(seed=1415, customers=120, days=30))
    history = tmp_path / "events.jsonl"
    history.write_text("".join(json.dumps(e) + "\n" for e in events))
    env = cli_env(p)
    outputs: list[str] = []

    fed = run_cli(["feed", str(history)], env)
    assert fed.returncode == 0, said(fed)
    p.wait_until_consumed()
    matches_oracle(p, events)

    status = run_cli(["status", "--json", "--sample", "0.5"], env, timeout=60)
    assert status.returncode == 0, said(status)
    redis_check = {c["name"]: c for c in json.loads(status.stdout)["checks"]}["redis"]
    assert redis_check["ok"] and redis_check["data"]["tls"], redis_check
    assert redis_check["data"]["user"] == "retention", redis_check
    assert redis_check["data"]["customers"] == len({e["customer_id"] for e in events})

    report = run_cli(["report", "--json"], env, timeout=60)
    assert report.returncode == 0, said(report)
    churn = json.loads(report.stdout)["churn_history"]  # read from Redis, not the exporter
    assert churn and any(churn.values()), report.stdout[-2000:]

    for proc in p.processes:
        proc.stop()
    rebuilt = run_cli(["rebuild", "--yes"], env, timeout=300)
    assert rebuilt.returncode == 0, said(rebuilt)
    assert f"from {len(events)} records" in rebuilt.stderr, said(rebuilt)
    p.start_worker()
    p.wait_until_consumed()
    p.start_exporter()
    matches_oracle(p, events)

    outputs += [said(done) for done in (fed, status, report, rebuilt)]
    outputs += [p.logs(), *(proc.log.read_text() for proc in p.processes)]
    password = secure["RETENTION_REDIS_PASSWORD"]
    assert all(password not in text for text in outputs)


def test_a_wrong_password_fails_fast_with_exit_3_and_names_the_settings(
    pipeline, secure: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(start=False, extra_env={**secure, "RETENTION_REDIS_PASSWORD": WRONG})
    env = cli_env(p)
    commands = {
        "status": ["status", "--sample", "0.1"],
        "status --json": ["status", "--json", "--sample", "0.1"],
        "rebuild": ["rebuild", "--yes"],
        "exporter": ["exporter"],
        "worker": ["worker"],
    }
    expected = ("user 'retention') refused the login", "RETENTION_REDIS_PASSWORD")
    assert_refused_fast(commands, env, expected, [WRONG, secure["RETENTION_REDIS_PASSWORD"]])


def test_certificates_and_the_plain_port(secure: dict[str, str], tmp_path: Path) -> None:
    """A client certificate from the stack's CA is accepted; a CA that did not sign the
    server's certificate is refused at the handshake (exit 3); the plain port admits the
    ACL user, and nobody without a login (the default user is off)."""
    where = Path(secure["RETENTION_REDIS_SSL_CAFILE"]).parent
    client = {
        "RETENTION_REDIS_SSL_CERTFILE": str(where / "client.pem"),
        "RETENTION_REDIS_SSL_KEYFILE": str(where / "client.key"),
    }
    done = run_cli(["status", "--json", "--sample", "0.1"], cli_env(**secure, **client))
    assert _redis(done)["ok"], said(done)

    other = certs.ensure(StackSettings(state=tmp_path))
    untrusted = {**secure, "RETENTION_REDIS_SSL_CAFILE": str(other.ca)}
    done = run_cli(["status", "--json", "--sample", "0.1"], cli_env(**untrusted))
    check = _redis(done)
    assert done.returncode == 3 and check["data"]["refused"], said(done)
    assert "certificate failed verification" in check["detail"], check
    assert "RETENTION_REDIS_SSL_CAFILE" in check["detail"], check

    local = StackSettings()
    plain = {**secure, "RETENTION_REDIS_URL": secure_redis.url(local, tls=False)}
    del plain["RETENTION_REDIS_SSL_CAFILE"]
    assert _redis(run_cli(["status", "--json", "--sample", "0.1"], cli_env(**plain)))["ok"]
    anonymous = {"RETENTION_REDIS_URL": f"redis://127.0.0.1:{local.redis_secure_port}/0"}
    done = run_cli(["status", "--json", "--sample", "0.1"], cli_env(**anonymous))
    assert done.returncode == 3 and _redis(done)["data"]["refused"], said(done)
    assert secure["RETENTION_REDIS_PASSWORD"] not in said(done)


def _redis(done: object) -> dict:  # type: ignore[type-arg]
    checks = json.loads(getattr(done, "stdout", ""))["checks"]
    return {c["name"]: c for c in checks}["redis"]  # type: ignore[no-any-return]
