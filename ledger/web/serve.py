"""Run the audit view with uvicorn: in the foreground (`moltis-ledger serve`), or in a
background thread on a free port (tests, the screenshot script, a gateway's tools)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["in_thread", "is_loopback", "run"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _config(app: Any, host: str, port: int) -> Any:
    import uvicorn

    # log_config=None: uvicorn logs through the standard loggers and configures nothing
    # (only the CLI configures logging); open live-update streams are closed within two
    # seconds of a shutdown.
    return uvicorn.Config(app, host=host, port=port, log_config=None,
                          timeout_graceful_shutdown=2, proxy_headers=False,
                          server_header=False, date_header=False, lifespan="off")


def run(app: Any, host: str, port: int) -> None:
    """Serve `app` until interrupted (Ctrl-C)."""
    import uvicorn

    uvicorn.Server(_config(app, host, port)).run()


@contextlib.contextmanager
def in_thread(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` on a free port in a daemon thread; yields its base URL and stops
    the server on exit."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, host, port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="ledger-web", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the web server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
