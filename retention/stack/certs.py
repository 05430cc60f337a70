"""The local stack's TLS material: one CA and PEM server/client certificates made by openssl.

Every file lives in <state>/certs and is made once; later calls return the same paths, so
a restarted service keeps its certificate and clients keep trusting the same CA. The
server certificate names 127.0.0.1 and localhost, so hostname verification passes. Java
services (Kafka) also get a PKCS12 keystore of the server key and chain, protected by a
random password kept beside it (see `keystore_password`).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from retention.stack.settings import StackError, StackSettings

OPENSSL = "openssl"
DAYS_CA = 3650
DAYS_LEAF = 825  # the longest validity some TLS clients accept for a leaf certificate
SUBJECT_PREFIX = "/O=retention-tracker local stack"
SAN = "DNS:localhost,IP:127.0.0.1"


@dataclass(frozen=True)
class Certificates:
    """Paths of the stack's TLS files (PEM unless the name says otherwise)."""

    where: Path

    @property
    def ca(self) -> Path:
        return self.where / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.where / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.where / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.where / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.where / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.where / "client.key"

    @property
    def server_keystore(self) -> Path:
        """PKCS12 of the server key and its chain, for Java servers (Kafka)."""
        return self.where / "server.p12"

    @property
    def keystore_password_file(self) -> Path:
        return self.where / "server.p12.password"

    def keystore_password(self) -> str:
        return self.keystore_password_file.read_text().strip()


def certs_dir(stack: StackSettings) -> Path:
    return stack.state / "certs"


def ensure(stack: StackSettings) -> Certificates:
    """The stack's certificates, made now for whatever file is missing (a missing CA
    remakes everything it signed, so no leaf outlives its CA)."""
    found = Certificates(certs_dir(stack))
    found.where.mkdir(parents=True, exist_ok=True)
    found.where.chmod(0o700)
    if not (found.ca.is_file() and found.ca_key.is_file()):
        for leaf in (found.server_cert, found.client_cert, found.server_keystore):
            leaf.unlink(missing_ok=True)
        _make_ca(found)
    if not (found.server_cert.is_file() and found.server_key.is_file()):
        found.server_keystore.unlink(missing_ok=True)
        _make_leaf(found, "server", found.server_cert, found.server_key, "serverAuth,clientAuth")
    if not (found.client_cert.is_file() and found.client_key.is_file()):
        _make_leaf(found, "client", found.client_cert, found.client_key, "clientAuth")
    if not (found.server_keystore.is_file() and found.keystore_password_file.is_file()):
        _make_keystore(found)
    return found


def _openssl(*args: str, cwd: Path) -> None:
    """Run openssl; its own message on failure (it never prints key material)."""
    if shutil.which(OPENSSL) is None:
        raise StackError("openssl is not installed: `bash scripts/stack.sh install` installs it")
    done = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(f"certs: openssl {args[0]} failed:\n{done.stderr.strip()}")


def _make_ca(found: Certificates) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
        "-days", str(DAYS_CA),
        "-subj", f"{SUBJECT_PREFIX}/CN=retention-tracker local CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(found.ca_key), "-out", str(found.ca),
        cwd=found.where,
    )  # fmt: skip
    found.ca_key.chmod(0o600)


def _make_leaf(found: Certificates, name: str, cert: Path, key: Path, usage: str) -> None:
    """A key and a certificate signed by the CA for 127.0.0.1 and localhost."""
    request = found.where / f"{name}.csr"
    extensions = found.where / f"{name}.ext"
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\n"
        f"subjectAltName={SAN}\n"
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-sha256",
        "-subj", f"{SUBJECT_PREFIX}/CN={'localhost' if name == 'server' else name}",
        "-keyout", str(key), "-out", str(request),
        cwd=found.where,
    )  # fmt: skip
    key.chmod(0o600)
    _openssl(
        "x509", "-req", "-sha256", "-days", str(DAYS_LEAF),
        "-in", str(request), "-CA", str(found.ca), "-CAkey", str(found.ca_key),
        "-set_serial", str(secrets.randbits(63)),
        "-extfile", str(extensions), "-out", str(cert),
        cwd=found.where,
    )  # fmt: skip
    request.unlink()
    extensions.unlink()


def _make_keystore(found: Certificates) -> None:
    """PKCS12 with the server key, certificate and CA, under a fresh random password."""
    password = secrets.token_urlsafe(24)
    found.keystore_password_file.write_text(password + "\n")
    found.keystore_password_file.chmod(0o600)
    _openssl(
        "pkcs12", "-export", "-name", "server",
        "-inkey", str(found.server_key), "-in", str(found.server_cert),
        "-certfile", str(found.ca),
        "-passout", f"file:{found.keystore_password_file}",
        "-out", str(found.server_keystore),
        cwd=found.where,
    )  # fmt: skip
    found.server_keystore.chmod(0o600)
