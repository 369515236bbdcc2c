"""The broker socket as paho sees it in the receiving process: reading ahead, writing behind.

paho reads each packet in three `recv` calls (type byte, length, body) and writes each
PUBACK with its own `send`: a system call each, about half of paho's cost per message at
thousands of messages a second. `BufferedSocket` takes whatever the kernel holds in one
`recv` and hands paho the pieces from memory, and holds paho's writes until `flush`, which
sends a whole batch of PUBACKs at once.

paho has no public hook for its socket; `_create_socket` is the internal one it uses for its
own websocket wrapper, and `tests/ingest/test_paho_socket.py` pins it.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import paho.mqtt.client as mqtt

READ_AHEAD = 65536  # bytes asked of the kernel per read
CLOSE_SECONDS = 2.0  # at most, to write what is held before closing (a DISCONNECT last)


class BufferedSocket:
    """A non-blocking TCP socket with a read-ahead and a write-behind buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._held = b""
        self._at = 0
        self._out = bytearray()

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes, from what was read ahead if any; BlockingIOError if nothing
        has arrived, b"" at the end of the stream (as `socket.recv`)."""
        if self._at >= len(self._held):
            data = self._sock.recv(max(size, READ_AHEAD))
            if len(data) <= size:
                return data
            self._held, self._at = data, 0
        piece = self._held[self._at : self._at + size]
        self._at += len(piece)
        return piece

    def pending(self) -> int:
        """Bytes read ahead and not yet taken: read on before waiting for the socket."""
        return len(self._held) - self._at

    def send(self, data: bytes) -> int:
        """Hold `data` until `flush`; all of it counts as written."""
        self._out += data
        return len(data)

    def unsent(self) -> int:
        return len(self._out)

    def flush(self) -> None:
        """Send what is held, as much as the kernel takes now. A broken connection shuts the
        socket down, so paho's next read finds the end of the stream and reconnects."""
        try:
            while self._out:
                del self._out[: self._sock.send(self._out)]
        except BlockingIOError:
            return
        except OSError:
            self._out.clear()
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                return

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        """Write what is held (paho closes right after writing a DISCONNECT), then close."""
        try:
            if self._out:
                self._sock.settimeout(CLOSE_SECONDS)
                self._sock.sendall(self._out)
        except OSError:
            pass
        finally:
            self._out.clear()
            self._sock.close()


class BufferedClient(mqtt.Client):
    """paho's client on a `BufferedSocket` (plain TCP only: TLS buffers on its own)."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket):
            return BufferedSocket(sock)
        return sock
