"""Bytes between processes: whole reads and writes on fds, length-prefixed frames on the
P<->W channel, and P<->Z messages (JSON, with fds passed as ``SCM_RIGHTS``)."""

import _socket
import os
import select
import struct

from .wire import dumps, loads

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from collections.abc import Sequence
    from typing import Any


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_exact(fd: int, n: int) -> bytes:
    chunks: list[bytes] = []
    left = n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("stdin ended early")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_rest(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def send_msg(sock: "_socket.socket", obj: object, fds: "Sequence[int]" = ()) -> None:
    """One P<->Z message: ``obj`` as JSON, ``fds`` passed along (``SCM_RIGHTS``)."""
    data = dumps(obj).encode()
    if fds:
        rights = struct.pack(f"{len(fds)}i", *fds)
        sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
    else:
        sock.send(data)


def recv_msg(sock: "_socket.socket", timeout: "float | None" = None) -> "tuple[Any, list[int]]":
    """One message (and its fds) from the P<->Z socket; ``None`` on EOF or timeout."""
    if timeout is not None and not select.select([sock], [], [], max(0.0, timeout))[0]:
        return None, []
    data, ancillary, _flags, _addr = sock.recvmsg(1 << 16, _socket.CMSG_LEN(8 * 4))
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            count = len(payload) // 4
            fds.extend(struct.unpack(f"{count}i", payload[: 4 * count]))
    return (loads(data) if data else None), fds


def framed(payload: bytes) -> bytes:
    """A frame of the P<->W channel: 4-byte big-endian length, then ``payload``."""
    return struct.pack(">I", len(payload)) + payload
