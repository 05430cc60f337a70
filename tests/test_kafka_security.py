"""Kafka security settings: checked before anything runs (exit 2 naming the variable),
turned into the same aiokafka options for every client and for Faust, and never echoed.
The broker-facing proofs are in tests/test_kafka_sasl_ssl.py."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from core.kafka import TokenFile, client_options, security_options
from core.settings import Settings
from retention.stack import certs
from retention.stack.settings import StackSettings
from streams.app import broker_credentials
from tests.cli_fixtures import cli_env, run_cli

CANARY = "canary-Pa55word-never-printed"
KAFKA_VARIABLES = (
    "RETENTION_KAFKA_SECURITY_PROTOCOL",
    "RETENTION_KAFKA_SASL_MECHANISM",
    "RETENTION_KAFKA_SASL_USERNAME",
    "RETENTION_KAFKA_SASL_PASSWORD",
    "RETENTION_KAFKA_SASL_OAUTH_TOKEN_FILE",
    "RETENTION_KAFKA_SSL_CAFILE",
    "RETENTION_KAFKA_SSL_CERTFILE",
    "RETENTION_KAFKA_SSL_KEYFILE",
    "RETENTION_KAFKA_SSL_KEY_PASSWORD",
    "RETENTION_KAFKA_SSL_CHECK_HOSTNAME",
)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> certs.Certificates:
    return certs.ensure(StackSettings(state=tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="module")
def encrypted_key(tls: certs.Certificates) -> Path:
    """The client key encrypted with CANARY as its password."""
    out = tls.where / "client.enc.key"
    subprocess.run(
        ["openssl", "pkey", "-in", tls.client_key, "-aes256", "-out", out,
         "-passout", f"pass:{CANARY}"],
        check=True,
    )  # fmt: skip
    return out


def sasl_ssl(tls: certs.Certificates, **more: object) -> Settings:
    given: dict[str, object] = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "app",
        "kafka_sasl_password": CANARY,
        "kafka_ssl_cafile": tls.ca,
    }
    return Settings(**{**given, **more})


def bare_env(**variables: str) -> dict[str, str]:
    """The command environment with only the given Kafka security variables."""
    env = {k: v for k, v in cli_env().items() if k not in KAFKA_VARIABLES}
    return {**env, **variables}


# --- settings checked before anything runs ------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"RETENTION_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "RETENTION_KAFKA_SASL_MECHANISM"),
        (
            {
                "RETENTION_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "RETENTION_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                "RETENTION_KAFKA_SASL_PASSWORD": CANARY,
            },
            "RETENTION_KAFKA_SASL_USERNAME",
        ),
        (
            {
                "RETENTION_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "RETENTION_KAFKA_SASL_MECHANISM": "PLAIN",
                "RETENTION_KAFKA_SASL_USERNAME": "app",
            },
            "RETENTION_KAFKA_SASL_PASSWORD",
        ),
        (
            {
                "RETENTION_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "RETENTION_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
            },
            "RETENTION_KAFKA_SASL_OAUTH_TOKEN_FILE",
        ),
        ({"RETENTION_KAFKA_SASL_MECHANISM": "GSSAPI"}, "RETENTION_KAFKA_SASL_MECHANISM"),
        ({"RETENTION_KAFKA_SECURITY_PROTOCOL": "TLS"}, "RETENTION_KAFKA_SECURITY_PROTOCOL"),
        # settings that a PLAINTEXT client would silently ignore
        ({"RETENTION_KAFKA_SASL_PASSWORD": CANARY}, "RETENTION_KAFKA_SASL_PASSWORD"),
        ({"RETENTION_KAFKA_SSL_CAFILE": "/etc/ssl/certs/ca.pem"}, "RETENTION_KAFKA_SSL_CAFILE"),
    ],
)
def test_contradictory_settings_exit_2_naming_the_variable(
    variables: dict[str, str], named: str
) -> None:
    for command in (["status"], ["worker"]):
        done = run_cli(command, bare_env(**variables), timeout=60)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        said = " ".join(done.stderr.split())
        assert "configuration error" in said and named in said, said
        assert CANARY not in done.stdout + done.stderr


def test_tls_files_are_loaded_before_anything_runs(
    tls: certs.Certificates, encrypted_key: Path, tmp_path: Path
) -> None:
    secure = {
        "RETENTION_KAFKA_SECURITY_PROTOCOL": "SSL",
        "RETENTION_KAFKA_SSL_CAFILE": str(tls.ca),
    }
    client = {
        "RETENTION_KAFKA_SSL_CERTFILE": str(tls.client_cert),
        "RETENTION_KAFKA_SSL_KEYFILE": str(encrypted_key),
    }
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    cases = [
        ({"RETENTION_KAFKA_SSL_CAFILE": str(tmp_path / "missing.pem")}, "SSL_CAFILE"),
        ({"RETENTION_KAFKA_SSL_CAFILE": str(tmp_path / "not-a-ca.pem")}, "SSL_CAFILE"),
        ({"RETENTION_KAFKA_SSL_CERTFILE": str(tls.client_cert)}, "SSL_KEYFILE"),
        ({"RETENTION_KAFKA_SSL_KEYFILE": str(tls.client_key)}, "SSL_CERTFILE"),
        ({**client, "RETENTION_KAFKA_SSL_KEY_PASSWORD": "wrong"}, "SSL_KEY_PASSWORD"),
        # the server's key does not match the client's certificate
        ({**client, "RETENTION_KAFKA_SSL_KEYFILE": str(tls.server_key)}, "SSL_KEYFILE"),
    ]
    for variables, named in cases:
        done = run_cli(["status"], bare_env(**{**secure, **variables}), timeout=60)
        said = " ".join(done.stderr.split())
        assert done.returncode == 2 and f"RETENTION_KAFKA_{named}" in said, (variables, said)
        assert CANARY not in done.stdout + done.stderr
    # and with the right password the same files load
    good = Settings(
        kafka_security_protocol="SSL", kafka_ssl_cafile=tls.ca,
        kafka_ssl_certfile=tls.client_cert, kafka_ssl_keyfile=encrypted_key,
        kafka_ssl_key_password=CANARY,
    )  # fmt: skip
    assert isinstance(security_options(good)["ssl_context"], ssl.SSLContext)


def test_settings_never_show_secrets(tls: certs.Certificates, encrypted_key: Path) -> None:
    s = sasl_ssl(
        tls, kafka_ssl_certfile=tls.client_cert, kafka_ssl_keyfile=encrypted_key,
        kafka_ssl_key_password=CANARY,
    )  # fmt: skip
    assert CANARY not in repr(s) and CANARY not in str(s.model_dump())
    assert CANARY not in repr(broker_credentials(s))
    with pytest.raises(ValueError) as caught:
        sasl_ssl(tls, kafka_ssl_cafile="/nonexistent/ca.pem")
    assert CANARY not in str(caught.value)


# --- one set of options for every client ---------------------------------------------------


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    s = Settings(kafka_bootstrap="broker:9092")
    plain = {"bootstrap_servers": "broker:9092", "security_protocol": "PLAINTEXT"}
    assert client_options(s) == plain
    assert broker_credentials(s) is None


def test_sasl_ssl_verifies_the_broker_by_name_unless_told_not_to(tls: certs.Certificates) -> None:
    options = client_options(sasl_ssl(tls, kafka_bootstrap="broker:9093"))
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "app",
        "sasl_plain_password": CANARY,
    }
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    relaxed = security_options(sasl_ssl(tls, kafka_ssl_check_hostname=False))["ssl_context"]
    assert relaxed.verify_mode == ssl.CERT_REQUIRED and not relaxed.check_hostname


def test_ssl_without_a_ca_file_trusts_the_system_cas() -> None:
    context = security_options(Settings(kafka_security_protocol="SSL"))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.cert_store_stats()["x509_ca"] > 0


def test_sasl_plaintext_has_no_tls() -> None:
    s = Settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="app", kafka_sasl_password=CANARY,
    )  # fmt: skip
    assert "ssl_context" not in security_options(s)


@pytest.mark.parametrize(
    "variant",
    ["SSL", "SASL_SSL SCRAM-SHA-256", "SASL_PLAINTEXT PLAIN", "SASL_SSL OAUTHBEARER"],
)
def test_faust_gets_the_same_options_as_the_raw_clients(
    variant: str, tls: certs.Certificates, tmp_path: Path
) -> None:
    """Faust translates its credentials back into aiokafka options itself: they must come
    out as ours, so the Faust app's clients connect as the pipeline's do."""
    protocol, _, mechanism = variant.partition(" ")
    token = tmp_path / "token"
    token.write_text("t0\n")
    given: dict[str, object] = {"kafka_security_protocol": protocol}
    if protocol.endswith("SSL"):
        given["kafka_ssl_cafile"] = tls.ca
    if mechanism:
        given["kafka_sasl_mechanism"] = mechanism
    if mechanism == "OAUTHBEARER":
        given["kafka_sasl_oauth_token_file"] = token
    elif mechanism:
        given |= {"kafka_sasl_username": "app", "kafka_sasl_password": CANARY}
    s = Settings(**given)
    ours, faust_side = security_options(s), credentials_to_aiokafka_auth(broker_credentials(s))
    assert {k: v for k, v in faust_side.items() if v is not None}.keys() == ours.keys()
    for name in ours:
        if name == "ssl_context":
            assert faust_side[name].check_hostname == ours[name].check_hostname
        elif name == "sasl_oauth_token_provider":
            assert isinstance(faust_side[name], TokenFile)
        else:
            assert faust_side[name] == ours[name], name
    assert isinstance(broker_credentials(s), faust.auth.Credentials)


def test_the_oauth_token_file_is_read_at_each_authentication(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    provider = TokenFile(token)
    assert asyncio.run(provider.token()) == "first"
    token.write_text("renewed\n")
    assert asyncio.run(provider.token()) == "renewed"


# --- the stack's SASL_SSL listener, as configured -----------------------------------------


def test_the_stack_broker_keeps_plaintext_and_adds_sasl_ssl(tmp_path: Path) -> None:
    from retention.stack.config import SecureListener, kafka_properties

    stack = StackSettings(state=tmp_path, kafka_port=1111, kafka_sasl_ssl_port=2222)
    secure = SecureListener(tmp_path / "k.p12", "kp", tmp_path / "ca.pem", "retention", "pw")
    lines = dict(
        line.split("=", 1) for line in kafka_properties(stack, secure).splitlines() if "=" in line
    )
    assert lines["advertised.listeners"] == ("PLAINTEXT://127.0.0.1:1111,SASL_SSL://127.0.0.1:2222")
    assert "SASL_SSL:SASL_SSL" in lines["listener.security.protocol.map"]
    assert lines["inter.broker.listener.name"] == "PLAINTEXT"
    mechanisms = lines["listener.name.sasl_ssl.sasl.enabled.mechanisms"].split(",")
    assert {"SCRAM-SHA-512", "SCRAM-SHA-256"} <= set(mechanisms)
    assert lines["listener.name.sasl_ssl.ssl.keystore.location"] == str(secure.keystore)
    assert 2222 in stack.service("kafka").ports  # `up` refuses to start over a taken port


def test_env_for_the_sasl_ssl_listener_never_prints_the_password(tmp_path: Path) -> None:
    import os
    import sys

    from retention.stack import scram

    stack = StackSettings(state=tmp_path)
    secret = scram.password(stack)
    env = {**os.environ, "RETENTION_STATE": str(tmp_path)}
    shown = subprocess.run(
        [sys.executable, "-m", "retention.stack", "env", "--sasl-ssl"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert secret not in shown.stdout + shown.stderr
    script = 'eval "$1"; echo "$RETENTION_KAFKA_SASL_PASSWORD $RETENTION_KAFKA_BOOTSTRAP"'
    done = subprocess.run(
        ["bash", "-c", script, "-", shown.stdout], env=env, capture_output=True, text=True
    )
    assert done.stdout.split() == [secret, f"127.0.0.1:{stack.kafka_sasl_ssl_port}"]
    assert (tmp_path / "kafka" / "sasl.password").stat().st_mode & 0o077 == 0


def test_the_stack_starts_from_a_shell_pointed_at_its_sasl_ssl_listener(tmp_path: Path) -> None:
    """The CA the client settings name does not exist before `up` makes it."""
    import os
    import sys

    env = {
        **os.environ,
        "RETENTION_STATE": str(tmp_path),
        "RETENTION_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "RETENTION_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "RETENTION_KAFKA_SASL_USERNAME": "retention",
        "RETENTION_KAFKA_SASL_PASSWORD": CANARY,
        "RETENTION_KAFKA_SSL_CAFILE": str(tmp_path / "certs" / "ca.pem"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "retention.stack", "env"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert CANARY not in done.stdout + done.stderr
    refused = run_cli(["status"], {**cli_env(), **env}, timeout=60)
    assert refused.returncode == 2 and "RETENTION_KAFKA_SSL_CAFILE" in refused.stderr


def test_a_broker_from_an_older_stack_is_told_to_restart_not_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`up` against a running broker without the SASL_SSL listener (started before it
    existed) keeps the PLAINTEXT users going and says how to add the listener."""
    from retention.stack import control
    from tests.cli_fixtures import closed_port

    control._users_of_running_broker(
        StackSettings(state=tmp_path, kafka_sasl_ssl_port=closed_port())
    )
    said = capsys.readouterr()
    assert "stack.sh restart kafka" in said.out + said.err
