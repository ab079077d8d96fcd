"""The wire between the host and a container's supervisor: Docker's multiplexed stdio stream.

Messages are ``MAGIC``, a big-endian length and a JSON body, followed by raw blobs whose sizes
the body gives; the supervisor (``supervisor/main.py``) speaks the same format on its stdio.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from typing import Any

MAGIC = b"SBX1"  # must match supervisor.MAGIC


class SandboxFailure(Exception):
    """The engine, the container or its supervisor failed (not the program)."""


class Backstop(SandboxFailure):
    """The supervisor did not answer within the host-side wall-clock backstop."""


def short(exc: BaseException, limit: int = 300) -> str:
    """``Type: message``, cut to ``limit`` characters for logs and verdict details."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Channel:
    """The host end of a container's attached stdio (Docker's multiplexed stream format)."""

    STDERR_KEEP = 64 * 1024

    def __init__(self, sock: Any) -> None:
        self._holder = sock  # keep the SDK's object (and its HTTP response) alive
        self._sock: socket.socket = getattr(sock, "_sock", sock)
        self._stdout = bytearray()
        self.stderr = bytearray()

    def _recv_exact(self, size: int, deadline: float) -> bytes:
        chunks = []
        while size > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Backstop("the sandbox container did not answer in time")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(min(size, 1 << 20))
            except TimeoutError:
                continue
            except OSError as exc:
                raise SandboxFailure(f"connection to the sandbox container failed: {short(exc)}") from exc
            if not chunk:
                detail = self.stderr.decode(errors="replace").strip()[-2000:]
                raise SandboxFailure(
                    "the sandbox container closed its connection"
                    + (f"; its stderr: {detail}" if detail else "")
                )
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _read_frame(self, deadline: float) -> None:
        header = self._recv_exact(8, deadline)
        stream, length = header[0], struct.unpack(">I", header[4:])[0]
        data = self._recv_exact(length, deadline) if length else b""
        if stream == 2:
            self.stderr += data
            del self.stderr[: -self.STDERR_KEEP]
        else:
            self._stdout += data

    def read(self, size: int, deadline: float) -> bytes:
        while len(self._stdout) < size:
            self._read_frame(deadline)
        data = bytes(self._stdout[:size])
        del self._stdout[:size]
        return data

    def recv_message(self, deadline: float) -> dict:
        head = self.read(len(MAGIC) + 4, deadline)
        if head[: len(MAGIC)] != MAGIC:
            raise SandboxFailure(f"garbled message from the sandbox supervisor: {head!r}")
        (length,) = struct.unpack(">I", head[len(MAGIC) :])
        return json.loads(self.read(length, deadline))

    def send(self, data: bytes, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        self._sock.settimeout(max(0.001, remaining))
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise SandboxFailure(f"could not send the run to the sandbox container: {short(exc)}") from exc

    def idle_and_alive(self) -> bool:
        """True when the connection is open and nothing unexpected is waiting on it."""
        if self._stdout:
            return False
        try:
            self._sock.setblocking(False)
            try:
                self._sock.recv(1, socket.MSG_PEEK)  # EOF (b"") or unexpected bytes: unusable
                return False
            finally:
                self._sock.setblocking(True)
        except BlockingIOError:
            return True
        except OSError:
            return False

    def close(self) -> None:
        for obj in (self._sock, self._holder):
            with contextlib.suppress(Exception):
                obj.close()
