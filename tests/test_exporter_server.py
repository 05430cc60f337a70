"""The exporter's HTTP server over real sockets: a fixed number of workers, a deadline per
request, TLS and basic auth; and scrapes sharing one collection. The app served here is a
small WSGI function (the real collector over real Redis is in test_exporter_security.py).
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from metrics.server import BoundedServer, make_bounded_server
from metrics.shared import SharedResult
from metrics.webconfig import WebConfig, load_web_config
from tests.services import free_port
from tests.tls_files import Certs, bcrypt_hash, make_certs
from tests.waiting import wait_until

BODY = b"retention_customers 3\n"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [BODY]


def serving(web: WebConfig, *, threads: int = 2, timeout: float = 1.5) -> Iterator[BoundedServer]:
    server = make_bounded_server(
        "127.0.0.1", free_port(), app, threads=threads, timeout=timeout, web=web
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def plain() -> Iterator[BoundedServer]:
    """Two workers, a 1.5 s deadline."""
    yield from serving(WebConfig())


@pytest.fixture
def patient() -> Iterator[BoundedServer]:
    """Two workers, a 30 s deadline: whatever is quicker is not the deadline's doing."""
    yield from serving(WebConfig(), timeout=30)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def secured(certs: Certs, tmp_path: Path) -> Iterator[BoundedServer]:
    path = tmp_path / "web.yml"
    path.write_text(
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"basic_auth_users:\n  prometheus: '{bcrypt_hash('right')}'\n"
    )
    yield from serving(load_web_config(path), timeout=30)


def port(server: BoundedServer) -> int:
    return int(server.server_address[1])


def get(url: str, headers: dict[str, str] | None = None, ca: Path | None = None) -> bytes:
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5, context=context) as resp:
        return bytes(resp.read())


def silent_client(server: BoundedServer) -> socket.socket:
    """A connection that sends nothing (a slowloris), once the server has taken it."""
    sock = socket.create_connection(("127.0.0.1", port(server)))
    return sock


def refused(server: BoundedServer) -> bool:
    """Whether a new connection is closed by the server without an answer."""
    with socket.create_connection(("127.0.0.1", port(server)), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        try:
            return sock.recv(100) == b""
        except ConnectionResetError:
            return True


def test_a_silent_client_does_not_block_scrapes(patient: BoundedServer) -> None:
    url = f"http://127.0.0.1:{port(patient)}/metrics"
    with silent_client(patient):
        time.sleep(0.2)
        started = time.monotonic()
        assert get(url) == BODY
        assert time.monotonic() - started < 3.0


def test_busy_workers_refuse_at_once_and_a_deadline_frees_them(plain: BoundedServer) -> None:
    """Two workers held by silent clients: a third connection is closed at once rather than
    queued, and the deadline (1.5 s) frees the workers while the silent clients stay open."""
    url = f"http://127.0.0.1:{port(plain)}/metrics"
    holders = [silent_client(plain), silent_client(plain)]
    try:
        wait_until(lambda: refused(plain), "a third connection to be refused", timeout=5)
        assert plain.refused >= 1
        started = time.monotonic()
        wait_until(lambda: _ok(url), "the deadline to free a worker", timeout=5, interval=0.05)
        assert time.monotonic() - started < 4.0
        for sock in holders:  # the server hung up on them
            sock.settimeout(1)
            assert sock.recv(100) == b""
    finally:
        for sock in holders:
            sock.close()


def test_a_client_trickling_bytes_is_cut_at_the_deadline(plain: BoundedServer) -> None:
    """One byte every 0.5 s never trips the socket timeout; the overall deadline still ends it."""
    with socket.create_connection(("127.0.0.1", port(plain))) as sock:
        started = time.monotonic()
        try:
            for byte in b"GET /metrics HTTP/1.0\r\nX-Slow: " + b"a" * 50:
                sock.sendall(bytes([byte]))
                time.sleep(0.5)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - started < 4.0


def _ok(url: str) -> bool:
    try:
        return get(url) == BODY
    except OSError:
        return False


def test_tls_with_basic_auth(secured: BoundedServer, certs: Certs) -> None:
    url = f"https://localhost:{port(secured)}/metrics"
    auth = {"Authorization": "Basic " + base64.b64encode(b"prometheus:right").decode()}
    assert get(url, auth, certs.ca) == BODY
    wrong = {"Authorization": "Basic " + base64.b64encode(b"prometheus:wrong").decode()}
    for headers in (wrong, {}):
        with pytest.raises(urllib.error.HTTPError) as caught:
            get(url, headers, certs.ca)
        assert caught.value.code == 401
        assert caught.value.headers["WWW-Authenticate"].startswith("Basic")
    with pytest.raises(OSError):  # plain HTTP to the TLS port gets no answer
        get(f"http://127.0.0.1:{port(secured)}/metrics", auth)
    # a client that does not trust the server's CA refuses the connection
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get(url, auth, certs.client_cert)


def test_a_silent_tls_client_does_not_block_the_accepting_loop(
    secured: BoundedServer, certs: Certs
) -> None:
    """The handshake happens in a worker: a client that never starts it holds one worker."""
    url = f"https://localhost:{port(secured)}/metrics"
    auth = {"Authorization": "Basic " + base64.b64encode(b"prometheus:right").decode()}
    with silent_client(secured):
        time.sleep(0.2)
        started = time.monotonic()
        assert get(url, auth, certs.ca) == BODY
        assert time.monotonic() - started < 3.0


def test_concurrent_callers_share_one_computation() -> None:
    running, most, calls = 0, 0, 0
    lock = threading.Lock()
    release = threading.Event()

    def compute() -> int:
        nonlocal running, most, calls
        with lock:
            running += 1
            calls += 1
            most = max(most, running)
        release.wait(5)
        time.sleep(0.05)
        with lock:
            running -= 1
        return calls

    shared = SharedResult(compute)
    with ThreadPoolExecutor(8) as pool:
        results = [pool.submit(shared.get) for _ in range(8)]
        time.sleep(0.3)  # every caller is waiting by now
        release.set()
        values = [r.result(5) for r in results]
    assert (most, calls, set(values)) == (1, 1, {1})
    assert shared.get() == 2  # max_age 0: a caller after the collection collects anew


def test_waiters_get_the_error_of_the_computation_they_waited_for() -> None:
    release = threading.Event()

    def compute() -> int:
        release.wait(5)
        raise ConnectionError("redis is down")

    shared: SharedResult[int] = SharedResult(compute)
    with ThreadPoolExecutor(4) as pool:
        results = [pool.submit(shared.get) for _ in range(4)]
        time.sleep(0.2)
        release.set()
        for r in results:
            with pytest.raises(ConnectionError, match="redis is down"):
                r.result(5)
    assert shared.computations == 1


def test_a_recent_result_is_served_within_max_age() -> None:
    counter = iter(range(100))
    shared = SharedResult(lambda: next(counter), max_age=0.5)
    assert (shared.get(), shared.get()) == (0, 0)
    time.sleep(0.6)
    assert shared.get() == 1


class SilentRedis:
    """A TCP server that accepts connections and never answers: a hung Redis."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_a_hung_redis_fails_scrapes_in_time_on_few_connections() -> None:
    """Eight scrapes at once against a Redis that never answers: each gets a 500 after the
    Redis timeout (retries included) instead of hanging, and they share collections, so
    the exporter opens no more connections than its cap."""
    from core.settings import Settings
    from metrics.exporter import build_collector, build_registry, make_server, metrics_app

    redis = SilentRedis()
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{redis.port}/0",
        exporter_port=free_port(),
        exporter_redis_timeout_seconds=0.5,
        exporter_redis_max_connections=2,
        exporter_request_timeout_seconds=30,
    )
    collector = build_collector(settings)
    server = make_server(settings, metrics_app(collector, build_registry(settings, collector)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.exporter_port}/metrics"

    def scrape(_: int) -> tuple[int, float]:
        started = time.monotonic()
        try:
            get(url)
        except urllib.error.HTTPError as exc:
            return exc.code, time.monotonic() - started
        return 200, time.monotonic() - started

    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(scrape, range(8)))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        redis.close()
    assert {code for code, _ in results} == {500}, results
    assert max(seconds for _, seconds in results) < 10, results
    assert 1 <= len(redis.accepted) <= 2, len(redis.accepted)


def test_mutual_tls_requires_a_client_certificate_from_the_ca(certs: Certs, tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"  client_ca_file: {certs.ca}\n  client_auth_type: RequireAndVerifyClientCert\n"
    )
    for server in serving(load_web_config(path)):
        url = f"https://localhost:{port(server)}/metrics"
        with_cert = ssl.create_default_context(cafile=str(certs.ca))
        with_cert.load_cert_chain(certs.client_cert, certs.client_key)
        with urllib.request.urlopen(url, timeout=5, context=with_cert) as resp:
            assert resp.read() == BODY
        with pytest.raises(OSError):  # no certificate: the handshake is refused
            get(url, ca=certs.ca)
