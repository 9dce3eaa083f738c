"""A TCP proxy on loopback that can stall: it relays bytes between a client and a real server until ``stall()``, after
which it accepts connections and keeps every socket open but relays nothing, in either direction (a database host
that hangs: a frozen VM, a storage freeze, a partition that drops packets without resetting connections).
``resume()`` relays again, including what was held back. Threads, so that it keeps working whatever the test's
event loop is blocked on."""

from __future__ import annotations

import selectors
import socket
import threading
from types import TracebackType


class StallingProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # accept() wakes up to see close()
        self.port = int(self._listener.getsockname()[1])
        self._relaying = threading.Event()
        self._relaying.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._start(self._accept)

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def stall(self) -> None:
        self._relaying.clear()

    def resume(self) -> None:
        self._relaying.set()

    def close(self) -> None:
        self._closed.set()
        self._relaying.set()
        self._listener.close()
        for s in list(self._sockets):
            s.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> StallingProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._sockets.append(client)
            self._start(self._connect, client)

    def _connect(self, client: socket.socket) -> None:
        # A connection accepted while stalled is held: the server is not even dialled until resume().
        while not self._relaying.wait(0.05):
            if self._closed.is_set():
                return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        self._sockets.append(server)
        self._relay(client, server)

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        with selectors.DefaultSelector() as selector:
            selector.register(a, selectors.EVENT_READ)
            selector.register(b, selectors.EVENT_READ)
            while not self._closed.is_set():
                if not self._relaying.is_set():
                    self._relaying.wait(0.05)  # hold everything: read nothing, so it stays in the kernel buffers
                    continue
                for key, _ in selector.select(timeout=0.05):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(65536)
                        if data:
                            peer[source].sendall(data)
                    except OSError:
                        data = b""
                    if not data:
                        a.close()
                        b.close()
                        return
