"""Redis login and TLS settings, checked before anything connects: one login source per
field, TLS files only with a TLS URL, unreadable files named by their variable, the
options every client class gets, and URLs redacted for printing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError
from redis.exceptions import AuthenticationError, ConnectionError

from core.redis_client import _options, describe_failure
from core.redis_url import parse_redis_url, redact
from core.settings import Settings
from retention.stack import certs, control, launch, secure_redis
from retention.stack.config import directives
from retention.stack.settings import StackSettings
from tests.services import RETENTION_BIN

SECRET = "s3cret-Canary"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> certs.Certificates:
    return certs.ensure(StackSettings(state=tmp_path_factory.mktemp("stack")))


def refused(**kwargs: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(**kwargs)  # type: ignore[arg-type]
    text = str(caught.value)
    assert SECRET not in text
    return text


def test_each_login_field_comes_from_one_place() -> None:
    text = refused(redis_url=f"redis://u:{SECRET}@h:1/0", redis_password=SECRET)
    assert "RETENTION_REDIS_PASSWORD is set and RETENTION_REDIS_URL has a password too" in text
    text = refused(redis_url="redis+cluster://u@h:1,h:2", redis_username="v")
    assert "RETENTION_REDIS_USERNAME is set and RETENTION_REDIS_URL has a user too" in text
    # the user in the URL and the password in its variable is the usual split
    settings = Settings(redis_url="rediss://retention@h:1/0", redis_password=SECRET)
    options = _options(settings, 1.0, 1.0, False)
    assert options["username"] == "retention" and options["password"] == SECRET


def test_tls_files_need_a_tls_url_and_readable_files(tls: certs.Certificates) -> None:
    text = refused(redis_url="redis://h:1/0", redis_ssl_cafile=tls.ca)
    assert "RETENTION_REDIS_SSL_CAFILE is ignored with a RETENTION_REDIS_URL without TLS" in text
    text = refused(redis_url="rediss://h:1/0", redis_ssl_certfile=tls.client_cert)
    assert "RETENTION_REDIS_SSL_KEYFILE is required with a client certificate" in text
    text = refused(redis_url="rediss://h:1/0", redis_ssl_cafile=Path("/nonexistent/ca.pem"))
    assert "RETENTION_REDIS_SSL_CAFILE: cannot load CA certificates from /nonexistent" in text
    text = refused(
        redis_url="rediss://h:1/0", redis_ssl_certfile=tls.client_cert, redis_ssl_keyfile=tls.ca
    )
    assert "RETENTION_REDIS_SSL_CERTFILE / RETENTION_REDIS_SSL_KEYFILE: cannot load" in text


@pytest.mark.parametrize(
    ("url", "topology"),
    [
        ("rediss://h:1/0", "standalone"),
        ("rediss+cluster://h:1,h:2", "cluster"),
        ("rediss+sentinel://h:1/svc/0", "sentinel"),
    ],
)
def test_tls_options_for_every_topology(tls: certs.Certificates, url: str, topology: str) -> None:
    settings = Settings(
        redis_url=url,
        redis_username="retention",
        redis_password=SECRET,
        redis_ssl_cafile=tls.ca,
        redis_ssl_certfile=tls.client_cert,
        redis_ssl_keyfile=tls.client_key,
        redis_ssl_check_hostname=False,
    )
    assert settings.redis_deployment.topology == topology and settings.redis_deployment.tls
    options = _options(settings, 1.0, 1.0, False)
    assert options["ssl_ca_certs"] == str(tls.ca)
    assert options["ssl_certfile"] == str(tls.client_cert)
    assert options["ssl_keyfile"] == str(tls.client_key)
    assert options["ssl_check_hostname"] is False and options["ssl_cert_reqs"] == "required"
    assert options["username"] == "retention" and options["password"] == SECRET
    # rediss:// itself makes a standalone client's connections TLS; the others are told
    assert options.get("ssl") is (None if topology == "standalone" else True)
    assert SECRET not in repr(settings)


def test_plain_urls_get_no_tls_options() -> None:
    options = _options(Settings(redis_url="redis+cluster://h:1"), 1.0, 1.0, False)
    assert not any(name.startswith("ssl") for name in options)


def test_redacted_urls_keep_the_user() -> None:
    assert redact(f"rediss://retention:{SECRET}@h:1/0") == "rediss://retention:****@h:1/0"
    assert redact(f"redis+cluster://:{SECRET}@a:1,b:2") == "redis+cluster://:****@a:1,b:2"
    assert redact(f"--redis-url=redis://u:{SECRET}@h") == "--redis-url=redis://u:****@h"
    assert redact("redis://u@h:1/0") == "redis://u@h:1/0"
    assert redact("--shards") == "--shards"
    assert SECRET not in parse_redis_url(f"redis://u:{SECRET}@h:1/0").describe()
    assert SECRET not in repr(parse_redis_url(f"redis://u:{SECRET}@h:1/0"))


def test_a_refused_login_is_no_outage_and_names_the_settings() -> None:
    settings = Settings(redis_url="rediss://retention@h:1/0", redis_password=SECRET)
    failure = describe_failure(settings, AuthenticationError("invalid username-password pair"))
    assert failure.refused and "user 'retention'" in failure.message
    assert "RETENTION_REDIS_PASSWORD" in failure.message and SECRET not in failure.message
    failure = describe_failure(settings, ConnectionError("Connection refused"))
    assert not failure.refused and failure.message.startswith("cannot reach Redis")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"RETENTION_REDIS_URL": f"rediss://u:{SECRET}@h:1/0",
             "RETENTION_REDIS_SSL_CAFILE": "/nonexistent/ca.pem"},
            "RETENTION_REDIS_SSL_CAFILE",
        ),
        (
            {"RETENTION_REDIS_URL": f"redis://u:{SECRET}@h:1/0",
             "RETENTION_REDIS_PASSWORD": SECRET},
            "RETENTION_REDIS_PASSWORD",
        ),
        ({"RETENTION_REDIS_URL": f"redis+clu://u:{SECRET}@h:1"}, "RETENTION_REDIS_URL"),
    ],
)  # fmt: skip
def test_bad_settings_exit_2_naming_the_variable_without_the_password(
    env: dict[str, str], named: str
) -> None:
    """Before anything connects: the commands and the worker print the variable to fix."""
    for args in (["status"], ["worker"], ["exporter"], ["rebuild", "--yes"]):
        done = subprocess.run(
            [str(RETENTION_BIN), *args],
            env={**os.environ, "COLUMNS": "200", **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        text = done.stdout + done.stderr
        assert done.returncode == 2, (args, text)
        assert named in text and SECRET not in text, (args, text)


def test_the_stack_keeps_the_secured_redis_password_to_itself(tmp_path: Path) -> None:
    """`env --redis-secure` reads the password when evaluated; the files holding it are
    the owner's only; the config has the ACL user, the default user off and the TLS port."""
    local = StackSettings(state=tmp_path)
    secret = secure_redis.password(local)
    assert secure_redis.password(local) == secret  # made once
    printed = control.env(local, redis_secure=True)
    assert secret not in printed
    assert f"export RETENTION_REDIS_URL={secure_redis.url(local)}" in printed
    assert 'RETENTION_REDIS_PASSWORD="$(cat ' in printed
    local.service_dir(secure_redis.SERVICE).mkdir(parents=True, exist_ok=True)
    command = launch.prepare_redis_secure(local)
    conf = Path(command[1])
    for private in (conf, secure_redis.password_file(local)):
        assert private.stat().st_mode & 0o077 == 0, private
    found = directives(conf.read_text())
    assert found["user"] == f"retention on >{secret} ~* &* +@all"
    assert found["tls-port"] == str(local.redis_secure_tls_port)
    assert "user default off" in conf.read_text()
