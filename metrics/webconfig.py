"""TLS and basic auth of the exporter, read from a web config file in the format of
Prometheus's exporter-toolkit (the file node_exporter takes as --web.config.file):

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to this file
      key_file: server.key
      client_ca_file: ca.crt         # only with a client_auth_type that verifies
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12
    basic_auth_users:
      prometheus: $2b$12$...         # bcrypt hash, e.g. from `htpasswd -nBC 12 ""`

The subset Python's ssl module can honour is accepted; any other key is refused by
name, so a setting is never silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

# exporter-toolkit's client_auth_type names, as Python's ssl can apply them.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Successful logins remembered (a digest, never the password) so that a scrape every
# few seconds does not pay a bcrypt hash each time; failures are never remembered.
AUTH_CACHE_SIZE = 64


class WebConfigError(Exception):
    """The web config file cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TlsServerConfig(_Strict):
    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: Literal[
        "NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"
    ] = "NoClientCert"
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS13"


class _WebConfigFile(_Strict):
    tls_server_config: _TlsServerConfig | None = None
    basic_auth_users: dict[str, str] | None = None


class BasicAuth:
    """Checks `Authorization: Basic` headers against bcrypt hashes in constant time."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self.users = users
        # Unknown users are checked against a real hash too, so that the time taken
        # does not tell which user names exist.
        self._decoy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=10))
        self._key = secrets.token_bytes(32)  # keys the digests of remembered logins
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    def allows(self, header: str | None) -> bool:
        credentials = _basic_credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        stored = self._stored_hash(user)
        digest = hmac.new(self._key, b"\0".join((user, password, stored)), hashlib.sha256)
        token = digest.digest()
        with self._lock:
            if token in self._verified:
                return True
        matches = bcrypt.checkpw(password, stored)
        if not matches or stored is self._decoy:
            return False
        with self._lock:
            if len(self._verified) >= AUTH_CACHE_SIZE:
                self._verified.clear()
            self._verified.add(token)
        return True

    def _stored_hash(self, user: bytes) -> bytes:
        """The user's hash, or the decoy; every name is compared, in constant time."""
        found = self._decoy
        for name, hashed in self.users.items():
            if hmac.compare_digest(name.encode(), user):
                found = hashed
        return found


@dataclass(frozen=True)
class WebConfig:
    """What the exporter's HTTP server applies: a TLS context and/or basic auth."""

    path: Path | None = None
    tls: ssl.SSLContext | None = None
    auth: BasicAuth | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


def load_web_config(path: Path | None) -> WebConfig:
    """The parsed file, its certificates loaded and hashes checked; WebConfig() when unset."""
    if path is None:
        return WebConfig()
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise WebConfigError(f"{path}: cannot read the web config: {exc}") from None
    try:
        parsed = _WebConfigFile.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise WebConfigError(f"{path}: {problems}") from None
    tls = _tls_context(parsed.tls_server_config, path) if parsed.tls_server_config else None
    auth = _basic_auth(parsed.basic_auth_users, path) if parsed.basic_auth_users else None
    return WebConfig(path=path, tls=tls, auth=auth)


def _tls_context(config: _TlsServerConfig, path: Path) -> ssl.SSLContext:
    """A server-side context from the tls_server_config section."""
    base = path.parent

    def resolve(name: str) -> str:
        return str(base / name)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[config.min_version]
    context.maximum_version = TLS_VERSIONS[config.max_version]
    where = f"{path}: tls_server_config"
    try:
        context.load_cert_chain(resolve(config.cert_file), resolve(config.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(
            f"{where}: cannot load cert_file {config.cert_file!r} with key_file "
            f"{config.key_file!r}: {exc}"
        ) from None
    verify = CLIENT_AUTH[config.client_auth_type]
    if (verify == ssl.CERT_NONE) != (config.client_ca_file is None):
        raise WebConfigError(
            f"{where}: client_ca_file goes with a client_auth_type that verifies "
            f"(VerifyClientCertIfGiven or RequireAndVerifyClientCert), and only with one"
        )
    if config.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=resolve(config.client_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(
                f"{where}: cannot load client_ca_file {config.client_ca_file!r}: {exc}"
            ) from None
        context.verify_mode = verify
    return context


def _basic_auth(users: dict[str, str], path: Path) -> BasicAuth:
    """Every hash must be a bcrypt hash: a plain password here would never match."""
    hashes = {}
    for user, hashed in users.items():
        encoded = hashed.encode()
        try:
            bcrypt.checkpw(b"", encoded)
        except ValueError:
            raise WebConfigError(
                f"{path}: basic_auth_users.{user}: not a bcrypt hash "
                f'(make one with `htpasswd -nBC 12 ""` or Python\'s bcrypt.hashpw)'
            ) from None
        hashes[user] = encoded
    return BasicAuth(hashes)


def _basic_credentials(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) from an `Authorization: Basic ...` header, None if malformed."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None
