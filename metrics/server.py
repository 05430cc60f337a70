"""The exporter's HTTP server: a fixed number of threads, a deadline per request, and
the web config's TLS and basic auth.

wsgiref's threading server starts a thread per connection and waits on a silent
client forever. Here a connection is handed to one of `threads` workers, or closed at
once when all are busy; each request (TLS handshake included, done in the worker, never
in the accepting loop) gets a socket timeout and an overall deadline, after which a
watchdog shuts its socket, so a client that sends nothing frees its worker in time.

prometheus-client's own `start_http_server` takes TLS files (certfile, keyfile,
client_cafile) but no web config file and no basic auth (its basic_auth_handler is
for pushing to a Pushgateway), and also starts a thread per connection; hence this.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from metrics.webconfig import WebConfig

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# How often the watchdog looks for requests past their deadline.
WATCHDOG_INTERVAL = 0.2
UNAUTHORIZED = b"Unauthorized\n"


class _Quiet(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class BoundedServer(WSGIServer):
    """A WSGI server whose requests run on a fixed pool under a per-request deadline."""

    request_queue_size = 64
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        *,
        threads: int,
        timeout: float,
        web: WebConfig,
    ) -> None:
        self.address_family = family
        self.request_timeout = timeout
        self.web = web
        self._slots = threading.BoundedSemaphore(threads)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="exporter-http")
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.refused = 0  # connections closed because every worker was busy
        super().__init__(address, _Quiet)
        self._watchdog = threading.Thread(target=self._watch, daemon=True)
        self._watchdog.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the connection to a free worker, or close it: never queue in memory."""
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        conn = request
        deadline = time.monotonic() + self.request_timeout
        try:
            request.settimeout(self.request_timeout)
            if self.web.tls is not None:
                conn = self.web.tls.wrap_socket(
                    request, server_side=True, do_handshake_on_connect=False
                )
            with self._lock:
                self._deadlines[conn] = deadline
            if isinstance(conn, ssl.SSLSocket):
                conn.do_handshake()
            self.finish_request(conn, client_address)
        except (OSError, ValueError) as exc:
            # timeouts, resets, failed handshakes, sockets shut by the watchdog
            log.debug("exporter request from %s ended: %s", client_address, exc)
        except Exception:
            self.handle_error(conn, client_address)
        finally:
            with self._lock:
                self._deadlines.pop(conn, None)
            self.shutdown_request(conn)
            self._slots.release()

    def _watch(self) -> None:
        """Shut the sockets of requests past their deadline (which wakes their worker)."""
        while not self._closing.wait(WATCHDOG_INTERVAL):
            now = time.monotonic()
            with self._lock:
                late = [s for s, deadline in self._deadlines.items() if deadline < now]
            for sock in late:
                # the plain socket's shutdown: an SSLSocket's own would drop its TLS
                # state under the worker still reading it
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def server_close(self) -> None:
        self._closing.set()
        super().server_close()
        self._pool.shutdown(wait=True, cancel_futures=True)


def guarded(app: WSGIApp, web: WebConfig) -> WSGIApp:
    """The app behind basic auth when the web config has users; the app itself otherwise."""
    auth = web.auth
    if auth is None:
        return app

    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if auth.allows(environ.get("HTTP_AUTHORIZATION")):
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("WWW-Authenticate", 'Basic realm="retention exporter"'),
            ],
        )
        return [UNAUTHORIZED]

    return checked


def make_bounded_server(
    host: str, port: int, app: WSGIApp, *, threads: int, timeout: float, web: WebConfig
) -> BoundedServer:
    """A BoundedServer on host:port (IPv6 when the host is an IPv6 address) serving app."""
    family, *_, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server = BoundedServer(
        (str(sockaddr[0]), port), family, threads=threads, timeout=timeout, web=web
    )
    server.set_app(guarded(app, web))
    return server
