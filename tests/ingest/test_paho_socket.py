"""The receiving process's broker socket: read ahead, written behind, nothing lost."""

from __future__ import annotations

import socket
import time

import pytest

from gridshare.ingest.paho_socket import BufferedSocket


def pair() -> tuple[BufferedSocket, socket.socket]:
    left, right = socket.socketpair()
    left.setblocking(False)
    right.settimeout(2)
    return BufferedSocket(left), right


def test_reads_ahead_and_hands_out_pieces() -> None:
    sock, peer = pair()
    with pytest.raises(BlockingIOError):
        sock.recv(1)
    peer.sendall(b"\x30\x05hello\x40\x02")
    time.sleep(0.05)
    assert sock.recv(1) == b"\x30"
    assert sock.pending() == 8
    assert sock.recv(1) == b"\x05"
    assert sock.recv(5) == b"hello"
    assert sock.recv(4) == b"\x40\x02"  # what is held, not more
    assert sock.pending() == 0
    with pytest.raises(BlockingIOError):
        sock.recv(2)
    peer.sendall(b"ab")
    time.sleep(0.05)
    assert sock.recv(2) == b"ab"  # fits the request: nothing held
    peer.close()
    time.sleep(0.05)
    assert sock.recv(1) == b""  # the end of the stream reaches paho as such
    sock.close()


def test_writes_behind_until_flushed_and_on_close() -> None:
    sock, peer = pair()
    assert sock.send(b"\x40\x02\x00\x01") == 4
    assert sock.send(b"\x40\x02\x00\x02") == 4
    assert sock.unsent() == 8
    sock.flush()
    assert sock.unsent() == 0
    assert peer.recv(100) == b"\x40\x02\x00\x01\x40\x02\x00\x02"  # one write
    sock.send(b"\xe0\x00")  # a DISCONNECT, then paho closes at once
    sock.close()
    assert peer.recv(100) == b"\xe0\x00"
    assert peer.recv(100) == b""


def test_a_broken_connection_ends_the_stream_for_the_reader() -> None:
    sock, peer = pair()
    peer.close()
    sock.send(b"x" * 10)
    for _ in range(3):  # the first send may still be taken by the kernel
        sock.flush()
        sock.send(b"x")
    assert sock.recv(1) == b""
    sock.close()
