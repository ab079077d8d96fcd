"""``TextSpace``: the observation and action space of every text environment, including in
Gymnasium's async vector envs with shared memory (their default).

Gymnasium keeps a ``Text`` observation in shared memory as character indices over the space's
charset and reads it back once, when the vector env is built: a character outside the charset
raises ``KeyError`` and every later observation reads as that first, padded copy. For
``TextSpace`` the buffer holds UTF-8 bytes instead, and what is read back is a live view that
decodes the current texts whenever it is indexed or copied.
"""

from __future__ import annotations

import multiprocessing as mp
import string
import struct
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

from gymnasium import spaces
from gymnasium.vector.utils import create_shared_memory, read_from_shared_memory, write_to_shared_memory

_LENGTH = struct.Struct("<I")
_UTF8_BYTES_PER_CHAR = 4


class TextSpace(spaces.Text):
    """Any Unicode string up to ``max_length`` characters.

    ``gymnasium.spaces.Text`` only admits strings over a fixed charset; model output and
    feedback are arbitrary Unicode, so membership here only checks type and length while
    ``sample()`` still draws from printable ASCII (used by ``check_env``).

    >>> space = TextSpace(max_length=20)
    >>> space.contains("Größe × 2"), space.contains("x" * 21), space.contains(3)
    (True, False, False)
    """

    def __init__(self, max_length: int = 1_000_000, seed: int | None = None) -> None:
        super().__init__(max_length=max_length, min_length=0, charset=string.printable, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"TextSpace(max_length={self.max_length})"

    @property
    def slot_bytes(self) -> int:
        """Bytes one text takes in shared memory: its length, then up to 4 bytes a character."""
        return _LENGTH.size + _UTF8_BYTES_PER_CHAR * self.max_length


class SharedTexts(Sequence[str]):
    """The texts of ``n`` environments in a shared buffer, decoded on access; a (deep) copy is
    a plain tuple of the texts at that moment."""

    def __init__(self, buffer: Any, n: int, slot_bytes: int) -> None:
        self._buffer = buffer
        self._n = n
        self._slot = slot_bytes

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self)[index]
        if not -self._n <= index < self._n:
            raise IndexError(index)
        start = (index % self._n) * self._slot
        raw = memoryview(self._buffer.get_obj()).cast("B")
        (size,) = _LENGTH.unpack_from(raw, start)
        return bytes(raw[start + _LENGTH.size : start + _LENGTH.size + size]).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(self._n))

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, Sequence) else other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[str, ...]:
        return tuple(self)

    def __copy__(self) -> tuple[str, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        return repr(tuple(self))


@create_shared_memory.register(TextSpace)
def _create(space: TextSpace, n: int = 1, ctx: ModuleType = mp) -> Any:
    return ctx.Array("B", n * space.slot_bytes)


@read_from_shared_memory.register(TextSpace)
def _read(space: TextSpace, shared_memory: Any, n: int = 1) -> SharedTexts:
    return SharedTexts(shared_memory, n, space.slot_bytes)


@write_to_shared_memory.register(TextSpace)
def _write(space: TextSpace, index: int, value: str, shared_memory: Any) -> None:
    data = value.encode("utf-8")
    if len(data) > space.slot_bytes - _LENGTH.size:
        raise ValueError(f"a text of {len(value)} characters does not fit {space!r}")
    raw = memoryview(shared_memory.get_obj()).cast("B")
    start = index * space.slot_bytes
    raw[start + _LENGTH.size : start + _LENGTH.size + len(data)] = data
    _LENGTH.pack_into(raw, start, len(data))


__all__ = ["SharedTexts", "TextSpace"]
