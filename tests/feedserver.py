"""A real local HTTP server for feed tests: each path answers as the test scripts it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    """One scripted answer."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    respond: Callable[[BaseHTTPRequestHandler], None] | None = None


@dataclass
class FeedServer:
    """The routes, and every request's headers as received, by path."""

    base: str
    routes: dict[str, Route]
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        """The full URL of `path`."""
        return self.base + path


@contextmanager
def serve(routes: dict[str, Route] | None = None) -> Iterator[FeedServer]:
    """Start a server on 127.0.0.1 (a free port) for the duration of the block."""
    state = FeedServer(base="", routes=routes or {})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers)))
            route = state.routes.get(self.path.split("?")[0]) or Route(status=404, body=b"nope")
            if route.respond is not None:
                route.respond(self)
                return
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 64  # the default 5 drops simultaneous connections
        daemon_threads = True
        block_on_close = False  # a handler that stalls on purpose must not stall the test

    server = Server(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
