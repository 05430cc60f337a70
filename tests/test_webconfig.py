"""The exporter's web config file (exporter-toolkit format): what is accepted, what is
refused and how, and basic auth's checks. Pure parsing and hashing, no services."""

from __future__ import annotations

import base64
import ssl
import subprocess
from pathlib import Path

import pytest

from metrics.webconfig import WebConfigError, load_web_config
from tests.services import RETENTION_BIN, ROOT, free_port
from tests.tls_files import Certs, bcrypt_hash, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def tls_section(certs: Certs, extra: str = "") -> str:
    return (
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n"
        f"  key_file: {certs.server_key}\n{extra}"
    )


def test_unset_means_plain_http_without_auth() -> None:
    web = load_web_config(None)
    assert (web.tls, web.auth, web.scheme) == (None, None, "http")


def test_tls_and_users_load_with_paths_relative_to_the_file(certs: Certs) -> None:
    hashed = bcrypt_hash("s3cret")
    # the file sits beside the certificates and names them by their bare names
    path = certs.ca.parent / "web.yml"
    path.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n"
        "  min_version: TLS13\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    web = load_web_config(path)
    assert web.scheme == "https" and web.tls is not None and web.auth is not None
    assert web.tls.verify_mode == ssl.CERT_REQUIRED
    assert web.tls.minimum_version == ssl.TLSVersion.TLSv1_3
    assert web.auth.allows(basic("prometheus", "s3cret"))


def test_basic_auth_accepts_only_the_right_user_and_password(tmp_path: Path) -> None:
    web = load_web_config(write(tmp_path, f"basic_auth_users:\n  alice: '{bcrypt_hash('pw')}'\n"))
    auth = web.auth
    assert auth is not None and web.tls is None
    assert auth.allows(basic("alice", "pw"))
    assert auth.allows(basic("alice", "pw"))  # the remembered success
    for header in (
        basic("alice", "PW"),
        basic("alice", "pw "),
        basic("bob", "pw"),
        basic("", ""),
        "Bearer abc",
        "Basic not-base64!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "",
        None,
    ):
        assert not auth.allows(header), header


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("tls_server_config: {cert_file: x, key_file: y, cipher_suites: [a]}\n", "cipher_suites"),
        ("http_server_config:\n  http2: false\n", "http_server_config"),
        ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice"),
        ("basic_auth_users: [alice]\n", "basic_auth_users"),
        ("tls_server_config:\n  cert_file: x\n", "key_file"),
        ("tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAnyClientCert}\n",
         "client_auth_type"),
        ("tls_server_config: [\n", "cannot read"),
    ],
)  # fmt: skip
def test_a_file_that_cannot_be_applied_is_refused_by_name(
    tmp_path: Path, text: str, named: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    assert str(path) in str(caught.value) and named in str(caught.value)


def test_certificates_that_cannot_be_loaded_are_refused(tmp_path: Path, certs: Certs) -> None:
    missing = write(tmp_path, "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n")
    with pytest.raises(WebConfigError, match=r"cert_file 'nope.crt'"):
        load_web_config(missing)
    swapped = (
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.client_key}\n"
    )
    with pytest.raises(WebConfigError, match="cannot load cert_file"):
        load_web_config(write(tmp_path, swapped))


def test_client_ca_and_client_auth_type_go_together(tmp_path: Path, certs: Certs) -> None:
    without_type = tls_section(certs, f"  client_ca_file: {certs.ca}\n")
    with pytest.raises(WebConfigError, match="client_ca_file goes with"):
        load_web_config(write(tmp_path, without_type))
    without_ca = tls_section(certs, "  client_auth_type: RequireAndVerifyClientCert\n")
    with pytest.raises(WebConfigError, match="client_ca_file goes with"):
        load_web_config(write(tmp_path, without_ca))
    optional = tls_section(
        certs, f"  client_ca_file: {certs.ca}\n  client_auth_type: VerifyClientCertIfGiven\n"
    )
    tls = load_web_config(write(tmp_path, optional)).tls
    assert tls is not None and tls.verify_mode == ssl.CERT_OPTIONAL


def test_the_exporter_command_refuses_a_bad_file_with_exit_2(tmp_path: Path) -> None:
    """Before touching Redis or a port: the message names the setting and the file."""
    path = write(tmp_path, "basic_auth_users:\n  alice: hunter2\n")
    done = subprocess.run(
        [str(RETENTION_BIN), "exporter"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "RETENTION_EXPORTER_WEB_CONFIG_FILE": str(path),
            "RETENTION_EXPORTER_PORT": str(free_port()),
            "RETENTION_REDIS_URL": "redis://127.0.0.1:1/0",
            "COLUMNS": "300",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    out = " ".join((done.stdout + done.stderr).split())
    assert "RETENTION_EXPORTER_WEB_CONFIG_FILE" in out and str(path) in out, out
    assert "basic_auth_users.alice: not a bcrypt hash" in out, out
