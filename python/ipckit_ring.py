"""A Python peer of ipckit's shared-memory channel (``shm.create`` / ``shm.open``), in pure Python.

A Python process that imports this module is a full peer of an ipckit channel between processes: it opens a
channel an ipckit process created (and takes the opener's side), or creates one that an ipckit process opens; it
sends and receives whole messages (``bytes``) through the two rings of the segment, and closes its end as ipckit
does. Linux only (futex(2)); Python 3.9+; no compiled extension: ``ctypes`` reaches ``shm_open``, ``syscall``
(futex) and libatomic, ``mmap`` maps the segment.

The layout is ipckit's, layout version 2, byte for byte as documented in ``shm/ring_channel_layout.ts`` (the
segment: a 192-byte header, ring 0 creator -> opener, ring 1 opener -> creator) and ``shm/ring.ts`` (each ring: a
192-byte header with the positions W and R and the sleeping flags, then the records: a length, a commit word, the
bytes). ``include/ipckit_ring.h`` is the same peer in C; the two follow each other line for line.

Everything in the segment is treated as hostile: every length and position is checked before it is used, nothing is
read or written outside the mapping, and a ring that breaks the rules ends the channel with ``ProtocolError``.

Atomics: Python has no atomic instructions of its own, so the shared words go through libatomic (``libatomic.so.1``,
installed with gcc's runtime) with the same memory orders as the C header. Without libatomic, on x86-64 only, aligned
32-bit loads and stores through a memoryview stand in (x86 keeps them atomic and in order); there, a wake-up can be
missed in a rare race and then costs one sleep (100 ms at most). On other machines libatomic is required.
``IPCKIT_RING_LIBATOMIC=0`` in the environment takes the path without libatomic on x86-64 (for tests).

Example (the ipckit side: ``await shm.create("/calc", { capacity: 4096 })``)::

    import ipckit_ring
    with ipckit_ring.open("/calc", wait=5.0) as channel:
        for message in channel:          # until the peer closes
            channel.send(message[::-1])  # echo it reversed
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import platform
import time
from typing import Iterator, Optional, Union

__all__ = [
    "VERSION",
    "Channel",
    "IpckitError",
    "ClosedError",
    "PeerDiedError",
    "ProtocolError",
    "VersionError",
    "MessageTooLargeError",
    "open",
    "create",
    "channel_size",
    "alive",
]

#: The layout version this module speaks (the channel's and each ring's version word).
VERSION = 2
CHANNEL_MAGIC = 0x43435049  # "IPCC"
RING_MAGIC = 0x52435049  # "IPCR"
CHANNEL_HEADER = 192
RING_HEADER = 192
MIN_CAPACITY = 64
MAX_CAPACITY = 1 << 30
PRODUCER_CLOSED = 1
CONSUMER_CLOSED = 2
WITH_BELL = 1
WITHOUT_BELL = 2
#: Longest single sleep in a blocking call: the peer's liveness and the flags are looked at in between.
SLEEP_S = 0.1

# Byte offsets in the channel header and in a ring header.
_C_MAGIC, _C_VERSION, _C_CAPACITY, _C_ATTACHED, _C_BELL_LENGTH = 0, 4, 8, 12, 16
_R_MAGIC, _R_VERSION, _R_CAPACITY, _R_FLAGS = 0, 4, 8, 12
_R_PRODUCER, _R_CONSUMER, _R_PRODUCER_TAG, _R_CONSUMER_TAG = 16, 20, 24, 28
_R_WRITE, _R_CONSUMER_SLEEPING, _R_READ, _R_PRODUCER_SLEEPING = 64, 68, 128, 132

_MASK = 0xFFFFFFFF


class IpckitError(OSError):
    """An ipckit channel failed; ``errno`` says how (as the C header's codes)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)


class ClosedError(IpckitError):
    """The channel ended: the peer closed it (EPIPE) or this end is closed (EBADF)."""


class PeerDiedError(ClosedError):
    """The peer process died (EOWNERDEAD), after everything it wrote whole was received."""


class ProtocolError(IpckitError):
    """The segment holds no ipckit channel, or a corrupt one (EPROTO)."""


class VersionError(ProtocolError):
    """The segment holds a channel of another layout version (EPROTONOSUPPORT)."""


class MessageTooLargeError(IpckitError):
    """A message exceeds the ring's limit, ``capacity - 8`` bytes (EMSGSIZE)."""


# ---- libc and futex ----

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
try:
    _shm_open = _libc.shm_open
    _shm_unlink = _libc.shm_unlink
except AttributeError:  # glibc before 2.34 keeps them in librt
    _librt = ctypes.CDLL(ctypes.util.find_library("rt") or "librt.so.1", use_errno=True)
    _shm_open = _librt.shm_open
    _shm_unlink = _librt.shm_unlink
_shm_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint]
_shm_open.restype = ctypes.c_int
_shm_unlink.argtypes = [ctypes.c_char_p]
_shm_unlink.restype = ctypes.c_int
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

_MACHINE = platform.machine()
_SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "arm64": 98}.get(_MACHINE)
if _SYS_FUTEX is None:
    raise ImportError(f"Cannot use ipckit_ring on {_MACHINE}: only x86-64 and arm64 Linux are supported")
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _futex_wait(address: int, value: int, seconds: float) -> None:
    """Sleeps while the word at ``address`` holds ``value``, for ``seconds`` at most (the caller re-checks)."""
    seconds = max(0.0, seconds)
    ts = _Timespec(int(seconds), int((seconds % 1) * 1e9))
    # Not FUTEX_PRIVATE_FLAG: the waker is another process. ctypes lets go of the GIL while it waits.
    _syscall(ctypes.c_long(_SYS_FUTEX), ctypes.c_void_p(address), ctypes.c_int(_FUTEX_WAIT),
             ctypes.c_uint(value & _MASK), ctypes.byref(ts), None, ctypes.c_int(0))


def _futex_wake(address: int) -> None:
    """Wakes every process that sleeps on the word at ``address``."""
    _syscall(ctypes.c_long(_SYS_FUTEX), ctypes.c_void_p(address), ctypes.c_int(_FUTEX_WAKE),
             ctypes.c_int(0x7FFFFFFF), None, None, ctypes.c_int(0))


# ---- atomics (memory orders as C11: relaxed 0, acquire 2, release 3, seq_cst 5) ----

_RELAXED, _ACQUIRE, _RELEASE, _SEQ_CST = 0, 2, 3, 5


def _load_libatomic() -> Optional[ctypes.CDLL]:
    for name in ("libatomic.so.1", ctypes.util.find_library("atomic")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        u32, ptr, order = ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int
        # getattr: names that start with two underscores would be mangled inside a class body.
        for symbol, args, result in (
            ("__atomic_load_4", [ptr, order], u32),
            ("__atomic_store_4", [ptr, u32, order], None),
            ("__atomic_compare_exchange_4", [ptr, ctypes.POINTER(u32), u32, order, order], ctypes.c_bool),
            ("__atomic_fetch_or_4", [ptr, u32, order], u32),
        ):
            fn = getattr(lib, symbol)
            fn.argtypes = args
            fn.restype = result
        return lib
    return None


# IPCKIT_RING_LIBATOMIC=0 takes the x86-64 path without libatomic (the tests run both).
_atomic = _load_libatomic() if os.environ.get("IPCKIT_RING_LIBATOMIC") != "0" else None
if _atomic is None and _MACHINE != "x86_64":
    raise ImportError(
        f"Cannot use ipckit_ring on {_MACHINE} without libatomic.so.1: Python has no atomic instructions of its own "
        "(install gcc's runtime, e.g. the libatomic1 package)"
    )
if _atomic is not None:
    _atomic_load = getattr(_atomic, "__atomic_load_4")
    _atomic_store = getattr(_atomic, "__atomic_store_4")
    _atomic_cas = getattr(_atomic, "__atomic_compare_exchange_4")
    _atomic_or = getattr(_atomic, "__atomic_fetch_or_4")


class _Words:
    """The 32-bit words of a mapping, read and written atomically (libatomic, or x86-64's aligned accesses)."""

    def __init__(self, mapping: mmap.mmap) -> None:
        self._anchor = ctypes.c_char.from_buffer(mapping)
        self.address = ctypes.addressof(self._anchor)
        self.view = memoryview(mapping).cast("I")

    def release(self) -> None:
        self.view.release()
        del self._anchor

    if _atomic is not None:

        def load(self, offset: int, order: int = _SEQ_CST) -> int:
            return _atomic_load(self.address + offset, order)

        def store(self, offset: int, value: int, order: int = _SEQ_CST) -> None:
            _atomic_store(self.address + offset, value & _MASK, order)

        def cas(self, offset: int, expected: int, desired: int) -> bool:
            e = ctypes.c_uint32(expected)
            return bool(_atomic_cas(self.address + offset, ctypes.byref(e), desired, _SEQ_CST, _SEQ_CST))

        def fetch_or(self, offset: int, bits: int) -> int:
            return _atomic_or(self.address + offset, bits, _SEQ_CST)

    else:  # x86-64 without libatomic: aligned 32-bit accesses are atomic and stay in order (TSO)

        def load(self, offset: int, order: int = _SEQ_CST) -> int:
            return self.view[offset >> 2]

        def store(self, offset: int, value: int, order: int = _SEQ_CST) -> None:
            self.view[offset >> 2] = value & _MASK

        def cas(self, offset: int, expected: int, desired: int) -> bool:
            if self.view[offset >> 2] != expected:
                return False
            self.view[offset >> 2] = desired
            return True

        def fetch_or(self, offset: int, bits: int) -> int:
            old = self.view[offset >> 2]
            self.view[offset >> 2] = old | bits
            return old


# ---- liveness, as ipckit's os/liveness.ts ----


def _stat(pid: int) -> Union[tuple[str, int], None, bool]:
    """``/proc/<pid>/stat``: (state, start time), None when there is no such process, False when it cannot tell."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None if os.path.exists("/proc/self/stat") else False
    except OSError as e:
        return None if e.errno == errno.ESRCH else False
    try:
        text = os.read(fd, 1024).decode("latin-1")
    except OSError as e:
        return None if e.errno == errno.ESRCH else False
    finally:
        os.close(fd)
    # The command name (field 2) may hold spaces and parentheses: the fields after it start after the last ')'.
    fields = text[text.rfind(")") + 2:].split(" ")
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return False


def _tag(start: int) -> int:
    """The 32-bit tag of a start time (never 0: 0 means unknown)."""
    return (start & _MASK) or 1


def _self_tag() -> int:
    s = _stat(os.getpid())
    return _tag(s[1]) if isinstance(s, tuple) else 0


def alive(pid: int, tag: int = 0) -> bool:
    """Whether ``pid`` is still the process tagged ``tag`` (0: any) and not a zombie: ipckit's liveness check."""
    if pid <= 0 or pid > 0x7FFFFFFF:
        return False
    s = _stat(pid)
    if s is None:
        return False
    if s is False:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except OSError:
            return True
    state, start = s  # type: ignore[misc]
    if state in ("Z", "X"):
        return False
    return tag == 0 or _tag(start) == tag


# ---- the channel ----


def channel_size(capacity: int) -> int:
    """Bytes of a channel's segment for a ring capacity."""
    return CHANNEL_HEADER + 2 * (RING_HEADER + capacity)


def _capacity_ok(c: int) -> bool:
    return MIN_CAPACITY <= c <= MAX_CAPACITY and c & (c - 1) == 0


def _check_name(name: str, what: str) -> bytes:
    raw = name.encode() if isinstance(name, str) else b""
    if not (2 <= len(raw) <= 255) or not raw.startswith(b"/") or b"/" in raw[1:] or b"\0" in raw:
        raise ValueError(f'Cannot {what} shm channel "{name}": the name must be "/" then 1 to 254 bytes without "/"')
    return raw


def _os_error(code: int, message: str) -> OSError:
    if code == errno.ENOENT:
        return FileNotFoundError(code, message)
    if code == errno.EEXIST:
        return FileExistsError(code, message)
    if code == errno.EACCES:
        return PermissionError(code, message)
    return IpckitError(code, message)


class _Ring:
    """One ring as this end sees it: header and data offsets; ``pos`` is this end's own position, kept here."""

    __slots__ = ("header", "data", "pos", "seen")

    def __init__(self, header: int, capacity: int) -> None:
        self.header = header
        self.data = header + RING_HEADER
        self.pos = 0
        self.seen = 0


class Channel:
    """One end of an ipckit shm channel. Make it with :func:`open` or :func:`create`; close it (or use ``with``)."""

    def __init__(self, name: str, fd: int, mapping: mmap.mmap, capacity: int, side: int) -> None:
        self.name = name
        self.capacity = capacity
        #: The largest message: the ring capacity - 8 bytes.
        self.max_message = capacity - 8
        self.side = side
        self._fd = fd
        self._map = mapping
        self._w = _Words(mapping)
        r0 = CHANNEL_HEADER
        r1 = r0 + RING_HEADER + capacity
        self._out = _Ring(r0 if side == 0 else r1, capacity)
        self._in = _Ring(r1 if side == 0 else r0, capacity)
        # Each end's own position, read once (only this end writes it).
        self._out.pos = self._w.load(self._out.header + _R_WRITE, _ACQUIRE)
        self._in.pos = self._w.load(self._in.header + _R_READ, _ACQUIRE)
        self._closed = False
        self._broken: Optional[ProtocolError] = None
        self.peer_pid = 0
        self.peer_tag = 0

    # -- state --

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def peer_waiting(self) -> bool:
        """Whether the peer announced that it sleeps waiting for a message from this end (diagnostics, tests)."""
        return not self._closed and self._w.load(self._out.header + _R_CONSUMER_SLEEPING) != 0

    def _wake_if_sleeping(self, flag: int, word: int) -> None:
        """Takes the announcement at ``flag`` (1 -> 0) and wakes the sleeper on ``word``: only the taker wakes."""
        w = self._w
        if w.load(flag) != 0 and w.cas(flag, 1, 0):
            _futex_wake(w.address + word)

    def _peer_died(self) -> bool:
        return self.peer_pid != 0 and not alive(self.peer_pid, self.peer_tag)

    # -- sending --

    def try_send(self, message: Union[bytes, bytearray, memoryview]) -> bool:
        """Sends one message if there is room now: True, or False when the ring is full (nothing written).

        :raises ClosedError: this end or the peer closed. :raises MessageTooLargeError: over ``max_message``.
        :raises ProtocolError: the peer wrote impossible positions.
        """
        if self._closed:
            raise ClosedError(errno.EBADF, f'Cannot send on shm channel "{self.name}": it is closed')
        w, out = self._w, self._out
        h = out.header
        if w.load(h + _R_FLAGS, _ACQUIRE) & CONSUMER_CLOSED:
            raise ClosedError(errno.EPIPE, f'Cannot send on shm channel "{self.name}": the peer closed it')
        n = len(message)
        if n > self.max_message:
            raise MessageTooLargeError(
                errno.EMSGSIZE,
                f'Cannot send a message of {n} bytes on shm channel "{self.name}": it exceeds the ring\'s limit '
                f"({self.max_message} bytes)",
            )
        cap = self.capacity
        size = (8 + n + 7) & ~7
        pos = out.pos
        used = (pos - out.seen) & _MASK
        if used > cap or cap - used < size or pos & 7:
            # Room seems short: read R again (the consumer's), and trust nothing about it.
            r = w.load(h + _R_READ)
            used = (pos - r) & _MASK
            if used > cap or (pos | r) & 7:
                raise ProtocolError(
                    errno.EPROTO,
                    f'Cannot write to shm channel "{self.name}": its positions are corrupt (write {pos}, read {r}, '
                    f"capacity {cap})",
                )
            out.seen = r
        free = cap - used
        if free < size:
            return False
        data = out.data
        at = pos & (cap - 1)
        w.store(data + at, n, _RELAXED)
        start = 0 if at + 8 == cap else at + 8
        first = min(n, cap - start)
        m = self._map
        m[data + start:data + start + first] = message[:first]
        if first < n:
            m[data:data + n - first] = message[first:]
        # Stale bytes never pass for a commit: zero the next record's commit word while it is free space.
        if size < free:
            w.store(data + ((at + size) & (cap - 1)) + 4, 0, _RELAXED)
        # The commit word last (after every byte of the record), then W.
        w.store(data + at + 4, pos + 1)
        out.pos = (pos + size) & _MASK
        w.store(h + _R_WRITE, out.pos, _RELEASE)
        self._wake_if_sleeping(h + _R_CONSUMER_SLEEPING, h + _R_WRITE)
        return True

    def send(self, message: Union[bytes, bytearray, memoryview], timeout: Optional[float] = None) -> None:
        """Sends one message; while the ring is full, sleeps until the peer makes room, ``timeout`` seconds at most.

        :raises TimeoutError: nothing was written in time. :raises PeerDiedError: the peer process died.
        Otherwise as :meth:`try_send`.
        """
        if self.try_send(message):
            return
        w, h = self._w, self._out.header
        start = time.monotonic()
        checked = start
        while True:
            now = time.monotonic()
            if now - checked >= SLEEP_S:
                checked = now
                if self._peer_died():
                    raise PeerDiedError(errno.EOWNERDEAD,
                                        f'Cannot send on shm channel "{self.name}": the peer process died')
            left = SLEEP_S if timeout is None else start + timeout - now
            if left <= 0:
                raise TimeoutError(errno.ETIMEDOUT,
                                   f'Cannot send on shm channel "{self.name}": timed out after {timeout} s')
            # Announce the sleep, then try once more: room made before the announcement is found here, room made
            # after it wakes us (or changes R, so the wait returns at once).
            w.store(h + _R_PRODUCER_SLEEPING, 1)
            try:
                r = w.load(h + _R_READ)
                if self.try_send(message):
                    return
                if not w.load(h + _R_FLAGS, _ACQUIRE) & CONSUMER_CLOSED:
                    _futex_wait(w.address + h + _R_READ, r, min(left, SLEEP_S))
            finally:
                w.store(h + _R_PRODUCER_SLEEPING, 0)

    # -- receiving --

    def _break(self, message: str) -> ProtocolError:
        """The incoming ring is corrupt: this channel cannot go on; the peer is told, as ipckit does."""
        self._broken = ProtocolError(errno.EPROTO, message)
        self._w.fetch_or(self._in.header + _R_FLAGS, CONSUMER_CLOSED)
        _futex_wake(self._w.address + self._in.header + _R_READ)
        return self._broken

    def _peek(self) -> int:
        """The length of the committed record at R, or -1 when none is there yet."""
        cap, r = self.capacity, self._in.pos
        if r & 7:
            raise self._break(f'Cannot read from shm channel "{self.name}": its read position {r} is corrupt')
        at = self._in.data + (r & (cap - 1))
        if self._w.load(at + 4) != (r + 1) & _MASK:
            return -1
        n = self._w.load(at, _RELAXED)
        if n > self.max_message:
            raise self._break(
                f'Cannot read from shm channel "{self.name}": a record of {n} bytes, more than the ring holds ({cap})'
            )
        return n

    def try_receive(self) -> Optional[bytes]:
        """The next message if one is there now, else None.

        :raises ClosedError: this end is closed, or the peer closed and everything was received.
        :raises ProtocolError: the peer wrote a corrupt record (the channel is broken; the peer is told).
        """
        if self._closed:
            raise ClosedError(errno.EBADF, f'Cannot receive on shm channel "{self.name}": it is closed')
        if self._broken is not None:
            raise self._broken
        n = self._peek()
        if n < 0:
            if not self._w.load(self._in.header + _R_FLAGS) & PRODUCER_CLOSED:
                return None
            # The peer closed: what it published before the flag is there to be read now.
            n = self._peek()
            if n < 0:
                raise ClosedError(errno.EPIPE, f'Cannot receive on shm channel "{self.name}": the peer closed it')
        cap, ring = self.capacity, self._in
        r = ring.pos
        at = r & (cap - 1)
        start = 0 if at + 8 == cap else at + 8
        first = min(n, cap - start)
        m, data = self._map, ring.data
        message = m[data + start:data + start + first]
        if first < n:
            message += m[data:data + n - first]
        # Give the space back (after every read of it), then wake the producer if it sleeps for room.
        ring.pos = (r + ((8 + n + 7) & ~7)) & _MASK
        h = ring.header
        self._w.store(h + _R_READ, ring.pos)
        self._wake_if_sleeping(h + _R_PRODUCER_SLEEPING, h + _R_READ)
        return message

    def _readable(self) -> bool:
        r = self._in.pos
        if r & 7:
            return True  # a corrupt position: reading says so
        return self._w.load(self._in.data + (r & (self.capacity - 1)) + 4) == (r + 1) & _MASK

    def receive(self, timeout: Optional[float] = None) -> bytes:
        """The next message; while there is none, sleeps until the peer sends, ``timeout`` seconds at most.

        :raises TimeoutError: none came in time. :raises PeerDiedError: the peer process died (after everything it
        wrote whole was received). Otherwise as :meth:`try_receive`.
        """
        m = self.try_receive()
        if m is not None:
            return m
        w, h = self._w, self._in.header
        start = time.monotonic()
        checked = start
        while True:
            now = time.monotonic()
            if now - checked >= SLEEP_S:
                checked = now
                if self._peer_died():
                    # What the peer wrote whole before it died comes first, as a socket delivers its buffer.
                    m = self.try_receive()
                    if m is not None:
                        return m
                    raise PeerDiedError(errno.EOWNERDEAD,
                                        f'Cannot receive on shm channel "{self.name}": the peer process died')
            left = SLEEP_S if timeout is None else start + timeout - now
            if left <= 0:
                raise TimeoutError(errno.ETIMEDOUT,
                                   f'Cannot receive on shm channel "{self.name}": timed out after {timeout} s')
            # Announce the sleep, then look again: a message published before the announcement is found here, one
            # published after it wakes us (or changes W, so the wait returns at once).
            w.store(h + _R_CONSUMER_SLEEPING, 1)
            try:
                pos = w.load(h + _R_WRITE)
                if not self._readable() and not w.load(h + _R_FLAGS) & PRODUCER_CLOSED:
                    _futex_wait(w.address + h + _R_WRITE, pos, min(left, SLEEP_S))
            finally:
                w.store(h + _R_CONSUMER_SLEEPING, 0)
            m = self.try_receive()
            if m is not None:
                return m

    def __iter__(self) -> Iterator[bytes]:
        """The messages, received one by one until the peer closes (a dead peer raises PeerDiedError)."""
        while True:
            try:
                yield self.receive()
            except PeerDiedError:
                raise
            except ClosedError:
                return

    # -- closing --

    def close(self) -> None:
        """Closes this end; idempotent. The peer receives what was sent before, then the end; its sends fail."""
        if self._closed:
            return
        self._closed = True
        w, out, inp = self._w, self._out, self._in
        w.fetch_or(out.header + _R_FLAGS, PRODUCER_CLOSED)
        w.fetch_or(inp.header + _R_FLAGS, CONSUMER_CLOSED)
        for word in (out.header + _R_WRITE, out.header + _R_READ, inp.header + _R_WRITE, inp.header + _R_READ):
            _futex_wake(w.address + word)
        w.release()
        self._map.close()
        os.close(self._fd)

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _map(fd: int, size: int) -> mmap.mmap:
    return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


def _try_open(name: str, raw: bytes) -> Union[Channel, OSError]:
    """One attempt to map the channel: a Channel (not attached yet), or the error (EAGAIN-like ones to retry on are
    ProtocolError/FileNotFoundError with ``retry`` set)."""
    fd = _shm_open(raw, os.O_RDWR | os.O_CLOEXEC, 0)
    if fd < 0:
        e = ctypes.get_errno()
        err = _os_error(e, f'Cannot open shm channel "{name}": ' +
                        ("it does not exist" if e == errno.ENOENT else f"shm_open failed: {os.strerror(e)}"))
        err.retry = e == errno.ENOENT  # type: ignore[attr-defined]
        return err
    keep = False
    try:
        size = os.fstat(fd).st_size
        if size < CHANNEL_HEADER:
            err = ProtocolError(errno.EPROTO, f'Cannot open shm channel "{name}": the segment holds no ipckit channel')
            err.retry = True  # type: ignore[attr-defined]
            return err
        # The header first: the capacity says how much to map, and it is checked before it is trusted.
        head = _map(fd, CHANNEL_HEADER)
        hw = _Words(head)
        try:
            magic = hw.load(_C_MAGIC, _ACQUIRE)
            version = hw.load(_C_VERSION, _RELAXED)
            capacity = hw.load(_C_CAPACITY, _RELAXED)
        finally:
            hw.release()
            head.close()
        if magic != CHANNEL_MAGIC:
            # The creator writes the magic word last: a segment without it may still be being laid out.
            err = ProtocolError(errno.EPROTO, f'Cannot open shm channel "{name}": the segment holds no ipckit channel')
            err.retry = True  # type: ignore[attr-defined]
            return err
        if version != VERSION:
            return VersionError(errno.EPROTONOSUPPORT,
                                f'Cannot open shm channel "{name}": layout version {version}, this peer speaks {VERSION}')
        if not _capacity_ok(capacity):
            return ProtocolError(errno.EPROTO, f'Cannot open shm channel "{name}": bad ring capacity {capacity}')
        need = channel_size(capacity)
        if size < need:
            return ProtocolError(
                errno.EPROTO,
                f'Cannot open shm channel "{name}": the segment ({size} bytes) is smaller than its layout ({need})',
            )
        channel = Channel(name, fd, _map(fd, need), capacity, 1)
        keep = True
    finally:
        if not keep:
            os.close(fd)
    w = channel._w
    for index, ring in ((0, CHANNEL_HEADER), (1, CHANNEL_HEADER + RING_HEADER + capacity)):
        rmagic, rversion, rcapacity = w.load(ring + _R_MAGIC), w.load(ring + _R_VERSION), w.load(ring + _R_CAPACITY)
        err = None
        if rmagic != RING_MAGIC:
            err = ProtocolError(errno.EPROTO, f'Cannot open shm channel "{name}": no ring {index} in the segment')
        elif rversion != VERSION:
            err = VersionError(
                errno.EPROTONOSUPPORT,
                f'Cannot open shm channel "{name}": ring {index} has layout version {rversion}, this peer speaks '
                f"{VERSION}",
            )
        elif rcapacity != capacity:
            err = ProtocolError(
                errno.EPROTO,
                f'Cannot open shm channel "{name}": ring {index} has capacity {rcapacity}, the channel says {capacity}',
            )
        if err is not None:
            channel._closed = True
            w.release()
            channel._map.close()
            os.close(fd)
            return err
    if w.load(CHANNEL_HEADER + _R_PRODUCER) == 0:
        # Its creator records itself before the magic word; an older one after it: wait until it did.
        channel._closed = True
        w.release()
        channel._map.close()
        os.close(fd)
        err = ProtocolError(errno.EPROTO, f'Cannot open shm channel "{name}": its creator has not recorded itself')
        err.retry = True  # type: ignore[attr-defined]
        return err
    return channel


def open(name: str, wait: float = 0.0) -> Channel:  # noqa: A001 (as ipckit's shm.open)
    """Opens the channel an ipckit process created with ``shm.create(name)`` and attaches as its opener (without the
    doorbell: both sides then wake each other with futexes). Retries for ``wait`` seconds (None: forever) while the
    segment does not exist or its creator has not laid it out yet.

    :raises FileNotFoundError: no such segment after ``wait``. :raises VersionError: another layout version.
    :raises ProtocolError: no ipckit channel there, or a corrupt header. :raises IpckitError: EBUSY, the channel
    already has its peer. :raises ValueError: a bad name.
    """
    raw = _check_name(name, "open")
    deadline = None if wait is None else time.monotonic() + max(0.0, wait)
    backoff = 0.001
    while True:
        got = _try_open(name, raw)
        if isinstance(got, Channel):
            break
        if not getattr(got, "retry", False):
            raise got
        if deadline is not None and time.monotonic() >= deadline:
            raise got
        time.sleep(backoff if deadline is None else max(0.0, min(backoff, deadline - time.monotonic())))
        backoff = min(backoff * 2, 0.02)
    ch = got
    w = ch._w
    # Who the creator is (for its liveness), then who this is, then the claim: the creator reads our owner once it
    # sees `attached`. The tag first, so a reader of the pid sees both.
    ch.peer_pid = w.load(ch._in.header + _R_PRODUCER)
    ch.peer_tag = w.load(ch._in.header + _R_PRODUCER_TAG)
    me, tag = os.getpid(), _self_tag()
    w.store(ch._out.header + _R_PRODUCER_TAG, tag)
    w.store(ch._out.header + _R_PRODUCER, me)
    w.store(ch._in.header + _R_CONSUMER_TAG, tag)
    w.store(ch._in.header + _R_CONSUMER, me)
    if not w.cas(_C_ATTACHED, 0, WITHOUT_BELL):
        ch.close()
        raise IpckitError(errno.EBUSY, f'Cannot open shm channel "{name}": it already has its peer')
    _futex_wake(w.address + _C_ATTACHED)
    return ch


def create(name: str, capacity: int = 1 << 20, mode: int = 0o600, timeout: Optional[float] = None) -> Channel:
    """Creates the segment ``name`` holding a channel with rings of ``capacity`` data bytes (rounded up to a power of
    two, at least 64) and waits up to ``timeout`` seconds (None: forever) for a peer to open it (an ipckit process
    with ``shm.open(name)``, or :func:`open`). Once the peer attached, the name is removed, as ipckit's
    ``shm.create`` does.

    :raises FileExistsError: the name exists. :raises TimeoutError: no peer came (the segment is removed).
    :raises ValueError: a bad name or capacity.
    """
    raw = _check_name(name, "create")
    if not isinstance(capacity, int) or not 1 <= capacity <= MAX_CAPACITY:
        raise ValueError(f'Cannot create shm channel "{name}": capacity {capacity} is not from 1 to 2^30')
    c = MIN_CAPACITY
    while c < capacity:
        c *= 2
    fd = _shm_open(raw, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    if fd < 0:
        e = ctypes.get_errno()
        raise _os_error(e, f'Cannot create shm channel "{name}": ' +
                        ("it exists" if e == errno.EEXIST else f"shm_open failed: {os.strerror(e)}"))
    try:
        os.ftruncate(fd, channel_size(c))
        ch = Channel(name, fd, _map(fd, channel_size(c)), c, 0)
    except BaseException:
        _shm_unlink(raw)
        os.close(fd)
        raise
    try:
        w = ch._w
        # A fresh segment is zero-filled. Each ring's magic last; then the creator's owner; the channel's magic last
        # of all: an opener that sees it sees the rest. No doorbell path (length 0).
        for ring in (CHANNEL_HEADER, CHANNEL_HEADER + RING_HEADER + c):
            w.store(ring + _R_VERSION, VERSION, _RELAXED)
            w.store(ring + _R_CAPACITY, c, _RELAXED)
            w.store(ring + _R_MAGIC, RING_MAGIC)
        me, tag = os.getpid(), _self_tag()
        w.store(ch._out.header + _R_PRODUCER_TAG, tag)
        w.store(ch._out.header + _R_PRODUCER, me)
        w.store(ch._in.header + _R_CONSUMER_TAG, tag)
        w.store(ch._in.header + _R_CONSUMER, me)
        w.store(_C_VERSION, VERSION, _RELAXED)
        w.store(_C_CAPACITY, c, _RELAXED)
        w.store(_C_MAGIC, CHANNEL_MAGIC)
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while w.load(_C_ATTACHED, _ACQUIRE) == 0:
            left = SLEEP_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(errno.ETIMEDOUT,
                                   f'Cannot create shm channel "{name}": no peer opened it within {timeout} s')
            _futex_wait(w.address + _C_ATTACHED, 0, min(left, SLEEP_S))
        # The opener recorded itself before it claimed `attached`.
        ch.peer_pid = w.load(ch._out.header + _R_CONSUMER)
        ch.peer_tag = w.load(ch._out.header + _R_CONSUMER_TAG)
    except BaseException:
        _shm_unlink(raw)
        ch.close()
        raise
    _shm_unlink(raw)
    return ch
