"""The stack's secured Redis (`redis-secure`): an ACL user with a password, and TLS.

It runs beside the open Redis the tests use: the plain port (RETENTION_REDIS_SECURE_PORT,
default 16380) admits only the `retention` user with its password (the default user is
off), and the TLS port (RETENTION_REDIS_SECURE_TLS_PORT, default 16381) also wants the
stack's certificate trusted; a client certificate signed by the stack's CA is checked
when sent. The password is made once per state directory, like the Kafka SCRAM user's.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from retention.stack import certs, passwords
from retention.stack.settings import StackSettings

SERVICE = "redis-secure"
USER = "retention"


def password_file(stack: StackSettings) -> Path:
    return stack.service_dir(SERVICE) / "acl.password"


def password(stack: StackSettings) -> str:
    return passwords.generated(password_file(stack))


def url(stack: StackSettings, tls: bool = True) -> str:
    """RETENTION_REDIS_URL of the secured Redis as USER, without the password."""
    if tls:
        return f"rediss://{USER}@127.0.0.1:{stack.redis_secure_tls_port}/0"
    return f"redis://{USER}@127.0.0.1:{stack.redis_secure_port}/0"


def client_env(stack: StackSettings) -> dict[str, str]:
    """RETENTION_* variables of a client of the TLS port as USER; the password is left
    out (it is in password_file)."""
    return {
        "RETENTION_REDIS_URL": url(stack),
        "RETENTION_REDIS_SSL_CAFILE": str(certs.Certificates(certs.certs_dir(stack)).ca),
    }


def client_settings(stack: StackSettings) -> StackSettings:
    """The stack's settings pointed at the TLS port as USER (for the readiness check)."""
    return stack.model_copy(
        update={
            "redis_url": url(stack),
            "redis_password": SecretStr(password(stack)),
            "redis_ssl_cafile": certs.Certificates(certs.certs_dir(stack)).ca,
        }
    )


def conf_lines(stack: StackSettings, tls: certs.Certificates, secret: str) -> str:
    """What the secured Redis adds to the standalone server's config."""
    return f"""\
# The default user is off: every client logs in as {USER} (AUTH {USER} <password>).
user default off
user {USER} on >{secret} ~* &* +@all
tls-port {stack.redis_secure_tls_port}
tls-cert-file {tls.server_cert}
tls-key-file {tls.server_key}
tls-ca-cert-file {tls.ca}
# a client certificate is checked against the CA when sent, not required
tls-auth-clients optional
"""
