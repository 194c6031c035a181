"""A TCP proxy in front of a real server (PostgreSQL in the tests), for cutting or
dropping what passes at a chosen moment: no mock of the driver or the server, only the
network between them. Subclasses decide in `_pump` what one connection's bytes do."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """Listens on 127.0.0.1 (`port`) and pumps each connection to `target` in a thread
    of its own. `arm()` tells the subclass to act on the next message; while `down`,
    new connections are closed at once (a network that is down)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.down = False
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        self.armed.set()

    def cut_all(self) -> None:
        """Cut every connection made so far, and refuse new ones (`down`)."""
        self.down = True
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            threading.Thread(target=self._pumped, args=(client, server), daemon=True).start()

    def _pumped(self, client: socket.socket, server: socket.socket) -> None:
        try:
            self._pump(client, server)
        finally:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        raise NotImplementedError

    @staticmethod
    def _forward(src: socket.socket, dst: socket.socket) -> bool:
        """Pass what `src` has on to `dst`; False once `src` has closed."""
        data = src.recv(65536)
        if data:
            dst.sendall(data)
        return bool(data)

    def close(self) -> None:
        self.listener.close()
