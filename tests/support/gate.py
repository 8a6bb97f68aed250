"""A loopback TCP forwarder that can hold a client at a chosen request, for tests that must act
while a client is provably waiting (e.g. interrupt a program in the middle of its searches).

    with GatedForwarder(engine_url, hold_if=lambda first_chunk: b"/_search" in first_chunk) as gate:
        start the program against gate.url
        gate.held.wait(60)       # the program is now blocked on a search the engine never sees
        interrupt it ...
        gate.cut()               # held requests are dropped and their connections closed

Bytes are forwarded as they come; a chunk that `hold_if` matches (the start of an HTTP request,
as clients send a small request in one write) is kept from the server until `cut()`, which then
drops it and closes that connection, so nothing held reaches the server late. Every other
connection keeps forwarding through the cut: a program's clean-up requests, sent while the test
is cutting, must not be cut off half-way (they are what the test checks). A later request that
matches is held again until the next cut.
"""
from __future__ import annotations

import socket
import threading
import urllib.parse
from typing import Callable


class GatedForwarder:
    def __init__(self, target_url: str, hold_if: Callable[[bytes], bool]) -> None:
        target = urllib.parse.urlsplit(target_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 80)
        self._hold_if = hold_if
        self._cond = threading.Condition()
        self._generation = 0
        self._sockets: list[socket.socket] = []
        self.held = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def close(self) -> None:
        self.cut()
        with self._cond:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)
        _close(self._listener)

    def __enter__(self) -> "GatedForwarder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            with self._cond:
                self._sockets += [client, server]
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=_pump, args=(server, client), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        while True:
            try:
                chunk = client.recv(65536)
            except OSError:
                chunk = b""
            if chunk and self._hold_if(chunk):
                with self._cond:
                    generation = self._generation
                    self.held.set()
                    while self._generation == generation:
                        self._cond.wait()
                chunk = b""  # dropped: the connection closes unforwarded
            if not chunk:
                _close(client), _close(server)
                return
            try:
                server.sendall(chunk)
            except OSError:
                _close(client)
                return


def _pump(source: socket.socket, sink: socket.socket) -> None:
    while True:
        try:
            chunk = source.recv(65536)
            if not chunk:
                break
            sink.sendall(chunk)
        except OSError:
            break
    _close(source), _close(sink)


def _close(sock: socket.socket) -> None:
    # shutdown first: a bare close() from one thread neither wakes another thread blocked in recv()
    # on it nor sends the peer a FIN while that recv() holds the descriptor, so the peer would wait
    # for its read timeout (the demo's clean-up once did, for 60 s)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
