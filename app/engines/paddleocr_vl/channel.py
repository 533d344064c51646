"""The socket pair between the service process and a page process (:mod:`.processes`): messages, a page's pixels,
and the engine errors that cross it."""

from __future__ import annotations

import contextlib
import pickle
import socket
import struct
import threading
from typing import Any

import numpy as np

from app.engines import errors as engine_errors

#: Socket buffers: a page's pixels (~6.5 MB at A4, 150 dpi) cross in a few system calls.
SOCKET_BUFFER = 4 * 1024 * 1024
_LENGTH = struct.Struct("!I")
_ERRORS = {cls.__name__: cls for cls in vars(engine_errors).values() if isinstance(cls, type)}


class Channel:
    """One end of the socket pair between the service and a page process: messages (pickled tuples, each after its
    4-byte length) from any thread, and a page's pixels as raw bytes after its message. Sending and receiving
    release the interpreter lock for the copies (``sendall``, ``recv_into`` straight into the array)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)

    def send(self, message: tuple[Any, ...], *arrays: np.ndarray) -> None:
        """One message and the arrays that belong to it, whole (OSError: the other end is gone)."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self.sock.sendall(_LENGTH.pack(len(data)) + data)
            for array in arrays:
                self.sock.sendall(np.ascontiguousarray(array).data.cast("B"))

    def receive(self) -> tuple[Any, ...]:
        """The next message (EOFError: the other end has closed); only ever from our own process at the other end
        of a private socket pair."""
        (size,) = _LENGTH.unpack(self._read(bytearray(_LENGTH.size)))
        message = pickle.loads(self._read(bytearray(size)))  # noqa: S301 - see the docstring
        assert isinstance(message, tuple)
        return message

    def receive_array(self, shape: tuple[int, ...]) -> np.ndarray:
        """The pixels of a uint8 array of ``shape``, read straight into a new writable array."""
        array = np.empty(shape, np.uint8)
        self._read(array.data.cast("B"))
        return array

    def _read(self, buffer: Any) -> Any:
        view = memoryview(buffer)
        while view.nbytes:
            count = self.sock.recv_into(view)
            if count == 0:
                raise EOFError("the other end has closed")
            view = view[count:]
        return buffer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def engine_error(kind: str, message: str, status: int | None) -> Exception:
    """The exception a page process reported, rebuilt (engine errors keep their class; anything else is a bug)."""
    cls = _ERRORS.get(kind)
    if cls is engine_errors.VlmFailed:
        return engine_errors.VlmFailed(message, status or 502)
    if cls is not None and issubclass(cls, engine_errors.EngineError):
        return cls(message)
    return RuntimeError(message)
