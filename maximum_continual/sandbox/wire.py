"""The codec of the pipe between the app and a sandbox process: pickle, with the unpickler limited to
plain data.

The sandbox process runs untrusted code, so what it sends is untrusted: a plain ``pickle.loads`` of
its bytes would run any callable it names, in the app. :func:`loads` resolves only the classes in
:data:`PLAIN_CLASSES` (harmless constructors of data; containers and numbers need no class at all
with protocol 5) and refuses messages over :data:`MAX_MESSAGE_BYTES`. Tool arguments, tool results
and final_answer's arguments cross as such plain data; anything else comes back as an error.
"""

from __future__ import annotations

import io
import pickle
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["MAX_MESSAGE_BYTES", "PLAIN_CLASSES", "Channel", "WireError", "dumps", "loads"]

#: the largest message either side reads; a bigger one means a broken or hostile peer
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: (module, name) the unpickler may resolve. Not bytearray, Fraction and the like: their
#: constructors can be made to allocate or compute without bound from a few bytes.
PLAIN_CLASSES: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "complex"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "list"),
        ("builtins", "dict"),
        ("builtins", "tuple"),
        ("builtins", "int"),  # a defaultdict's factory; int("...") is capped at 4,300 digits
        ("builtins", "float"),
        ("builtins", "bool"),
        ("builtins", "str"),
        ("collections", "OrderedDict"),
        ("collections", "Counter"),
        ("collections", "deque"),
        ("collections", "defaultdict"),
        ("datetime", "date"),
        ("datetime", "datetime"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("decimal", "Decimal"),
    }
)


class WireError(ValueError):
    """A value that cannot cross the pipe: not plain data, or not picklable at all."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in PLAIN_CLASSES:
            return super().find_class(module, name)
        raise WireError(f"{module}.{name} is not plain data")


def dumps(value: Any) -> bytes:
    try:
        data = pickle.dumps(value, protocol=5)
    except Exception as exc:  # PicklingError, TypeError, AttributeError, RecursionError, ...
        raise WireError(f"{type(exc).__name__}: {exc}") from None
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"{len(data)} bytes, over the limit of {MAX_MESSAGE_BYTES}")
    return data


def loads(data: bytes) -> Any:
    try:
        return _PlainUnpickler(io.BytesIO(data)).load()
    except WireError:
        raise
    except Exception as exc:  # a truncated or forged stream
        raise WireError(f"{type(exc).__name__}: {exc}") from None


class Channel:
    """One end of the pipe: messages are tuples (a kind, then plain fields), framed by ``Connection``.

    ``recv`` raises ``EOFError`` when the other end is gone, ``OSError`` on a broken pipe or an
    oversized message, :class:`WireError` on bytes that are not a plain message.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def send(self, *message: Any) -> None:
        self._conn.send_bytes(dumps(message))

    def recv(self) -> tuple[Any, ...]:
        message = loads(self._conn.recv_bytes(MAX_MESSAGE_BYTES))
        if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
            raise WireError("not a message")
        return message

    def poll(self, timeout_s: float) -> bool:
        return self._conn.poll(max(0.0, timeout_s))

    def close(self) -> None:
        self._conn.close()
