"""The stack's certificates (retention/stack/certs.py): made once, trusted through the CA
with hostname verification on 127.0.0.1 and localhost, usable for mutual TLS, and the
Java keystore opens with its password. Checked with real TLS handshakes over loopback."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from retention.stack import certs
from retention.stack.settings import StackSettings


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> certs.Certificates:
    return certs.ensure(StackSettings(state=tmp_path_factory.mktemp("state")))


def handshake(made: certs.Certificates, host: str, client_cert: bool) -> str:
    """One TLS handshake against a server using the stack's server certificate, which
    requires a client certificate; returns the client certificate's CN the server saw."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=made.ca)
    server_ctx.load_cert_chain(made.server_cert, made.server_key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                subject = dict(part[0] for part in tls.getpeercert()["subject"])  # type: ignore[index, misc]
                seen.append(str(subject["commonName"]))
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError):
            pass
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=made.ca)
    if client_cert:
        client_ctx.load_cert_chain(made.client_cert, made.client_key)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client_ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.recv(2)
    thread.join(5)
    return seen[0]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_clients_verify_the_server_by_name_and_the_server_the_client(
    made: certs.Certificates, host: str
) -> None:
    assert handshake(made, host, client_cert=True) == "client"


def test_a_name_the_certificate_does_not_carry_fails_verification(
    made: certs.Certificates,
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        handshake(made, "kafka.example.com", client_cert=True)


def test_a_second_call_keeps_every_file_and_a_lost_ca_remakes_its_leaves(tmp_path: Path) -> None:
    stack = StackSettings(state=tmp_path)
    first = certs.ensure(stack)
    files = [first.ca, first.server_cert, first.client_cert, first.server_keystore]
    before = [f.read_bytes() for f in files]
    again = certs.ensure(stack)
    assert [f.read_bytes() for f in files] == before
    again.ca.unlink()
    remade = certs.ensure(stack)
    after = [f.read_bytes() for f in files]
    assert all(old != new for old, new in zip(before, after, strict=True))
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", remade.ca, remade.server_cert, remade.client_cert],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr


def test_private_keys_and_the_keystore_password_are_private(made: certs.Certificates) -> None:
    private = [made.ca_key, made.server_key, made.client_key, made.keystore_password_file]
    assert all(p.stat().st_mode & 0o077 == 0 for p in private)
    assert made.where.stat().st_mode & 0o077 == 0


@pytest.mark.skipif(shutil.which("keytool") is None, reason="no JDK keytool")
def test_java_opens_the_keystore_with_its_password(made: certs.Certificates) -> None:
    listed = subprocess.run(
        ["keytool", "-list", "-storetype", "PKCS12", "-keystore", made.server_keystore,
         "-storepass", made.keystore_password()],
        capture_output=True, text=True,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "server, " in listed.stdout and "PrivateKeyEntry" in listed.stdout
