"""A Python peer of ipckit's publish-subscribe over shared memory (``shm.publisher`` / ``shm.subscriber``).

A Python process that imports this module subscribes to a segment an ipckit process (or a C or Python peer)
publishes on, or publishes on one that they subscribe to, with either policy: ``"block"`` (the publisher waits for
the slowest live subscriber) or ``"overwrite"`` (a subscriber that fell a ring behind gets ``LaggedError`` with the
count of messages it missed, then goes on from the oldest message still there). Linux only; pure Python on top of
``ipckit_ring`` (its libatomic access, futex and liveness helpers): keep the two files side by side.

The layout is ipckit's pub-sub layout version 1, byte for byte as documented in ``shm/pubsub_layout.ts``; a segment
of another version is refused with ``VersionError``. Everything in the segment is treated as hostile: lengths,
positions and slots are checked, nothing is read outside the mapping; a corrupt segment is ``ProtocolError``.

Example (the ipckit side: ``await shm.publisher("/news", { capacity: 1 << 16 })``)::

    import ipckit_pubsub
    with ipckit_pubsub.subscribe("/news", wait=5.0) as sub:
        for message in sub:      # until the publisher closes
            print(len(message))
"""

from __future__ import annotations

import errno
import mmap
import os
import time
from typing import Iterator, Optional, Union

from ipckit_ring import (
    ClosedError,
    IpckitError,
    MessageTooLargeError,
    PeerDiedError,
    ProtocolError,
    VersionError,
    _futex_wait,
    _futex_wake,
    _self_tag,
    _shm_open,
    _shm_unlink,
    _Words,
    alive,
)

__all__ = ["VERSION", "LaggedError", "Publisher", "Subscriber", "publish_on", "subscribe"]

#: The pub-sub layout version this module speaks.
VERSION = 1
MAGIC = 0x53505049  # "IPPS"
HEADER, SLOT, RECORD_HEADER = 256, 64, 16
MAX_SLOTS, MAX_HISTORY = 1024, 65536
SLEEP_S = 0.1
_M = 0xFFFFFFFF

(_MAGIC, _VERSION, _CAPACITY, _SLOTS, _INDEX, _POLICY, _HISTORY, _FLAGS, _PUB_ID, _PUB_TAG, _SLOT_LIMIT) = (
    0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40)
_WRITE, _SEQ, _SLEEPERS, _TAIL, _TAIL_SEQ, _PUB_SLEEPING, _PROGRESS = 64, 68, 72, 128, 132, 136, 140
_S_STATE, _S_ID, _S_TAG, _S_READ, _S_SEQ, _S_SLEEPING, _S_GEN = 0, 4, 8, 12, 16, 20, 24


class LaggedError(IpckitError):
    """The publisher overwrote messages this subscriber had not read (``missed`` of them); receive again."""

    def __init__(self, missed: int, message: str) -> None:
        super().__init__(errno.ESTALE, message)
        self.missed = missed


def _signed(x: int) -> int:
    x &= _M
    return x - (1 << 32) if x >= 1 << 31 else x


def _record_size(n: int) -> int:
    return (RECORD_HEADER + n + 7) & ~7


def _geometry(capacity: int, slots: int, history: int) -> tuple[int, int, int]:
    k = 2
    while k < history + 2:
        k *= 2
    index_at = HEADER + SLOT * slots
    return k, index_at, (index_at + 4 * k + 63) // 64 * 64


class _Segment:
    """A mapped pub-sub segment and its checked geometry."""

    def __init__(self, name: str, fd: int, what: str) -> None:
        self.name = name
        try:
            size = os.fstat(fd).st_size
            if size < HEADER:
                raise ProtocolError(errno.EPROTO, f"Cannot {what} pub-sub \"{name}\": the segment holds no pub-sub")
            self.mapping = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.w = _Words(self.mapping)
        w = self.w
        if w.load(_MAGIC) != MAGIC:
            self._fail(ProtocolError, errno.EPROTO, f"Cannot {what} pub-sub \"{name}\": the segment holds no pub-sub")
        if w.load(_VERSION) != VERSION:
            self._fail(VersionError, errno.EPROTONOSUPPORT,
                       f"Cannot {what} pub-sub \"{name}\": layout version {w.load(_VERSION)}, this peer speaks {VERSION}")
        c, n, h, pol = w.load(_CAPACITY), w.load(_SLOTS), w.load(_HISTORY), w.load(_POLICY)
        if c < 64 or c > 1 << 30 or c & (c - 1) or not 1 <= n <= MAX_SLOTS or h > MAX_HISTORY or pol > 1:
            self._fail(ProtocolError, errno.EPROTO, f"Cannot {what} pub-sub \"{name}\": bad header")
        k, index_at, data_at = _geometry(c, n, h)
        if w.load(_INDEX) != k or data_at + c > size:
            self._fail(ProtocolError, errno.EPROTO, f"Cannot {what} pub-sub \"{name}\": smaller than its layout")
        self.capacity, self.mask, self.slots, self.k, self.history = c, c - 1, n, k, h
        self.policy = "overwrite" if pol == 1 else "block"
        self.max_message = c - RECORD_HEADER
        self.index_at, self.data_at = index_at, data_at

    def _fail(self, cls, code: int, message: str) -> None:
        self.release()
        raise cls(code, message)

    def release(self) -> None:
        if getattr(self, "mapping", None) is None:
            return
        self.w.release()
        self.mapping.close()
        self.mapping = None

    def word(self, pos: int, k: int) -> int:
        return self.data_at + ((pos + 4 * k) & self.mask)

    def slot(self, i: int, field: int) -> int:
        return HEADER + i * SLOT + field

    def add(self, offset: int, delta: int) -> int:
        while True:
            old = self.w.load(offset)
            if self.w.cas(offset, old, (old + delta) & _M):
                return old

    def exchange(self, offset: int, value: int) -> int:
        while True:
            old = self.w.load(offset)
            if self.w.cas(offset, old, value):
                return old

    def read(self, pos: int, n: int) -> bytes:
        at = self.data_at + ((pos + RECORD_HEADER) & self.mask)
        end = self.data_at + self.capacity
        first = min(n, end - at)
        out = self.mapping[at:at + first]
        return out + self.mapping[self.data_at:self.data_at + n - first] if first < n else out

    def drop(self, i: int, gen: int) -> None:
        if self.w.load(self.slot(i, _S_GEN)) != gen:
            return
        if self.exchange(self.slot(i, _S_SLEEPING), 0) == 1:
            self.add(_SLEEPERS, -1)
        self.w.store(self.slot(i, _S_ID), 0)
        state = self.w.load(self.slot(i, _S_STATE))
        if state != 0:
            self.w.cas(self.slot(i, _S_STATE), state, 0)

    def sweep(self) -> int:
        live = 0
        limit = min(self.w.load(_SLOT_LIMIT), self.slots)
        for i in range(limit):
            state = self.w.load(self.slot(i, _S_STATE))
            if state == 0:
                continue
            gen, pid, tag = (self.w.load(self.slot(i, f)) for f in (_S_GEN, _S_ID, _S_TAG))
            if pid > 0 and alive(pid, tag):
                live += state == 2
            elif state == 2 or pid > 0:
                self.drop(i, gen)
        return live


def _open(name: str, what: str, wait: float) -> _Segment:
    deadline = time.monotonic() + wait
    while True:
        fd = _shm_open(name.encode(), os.O_RDWR | os.O_CLOEXEC, 0)
        try:
            if fd < 0:
                e = __import__("ctypes").get_errno()
                raise IpckitError(e, f"Cannot {what} pub-sub \"{name}\": {os.strerror(e)}")
            return _Segment(name, fd, what)
        except (IpckitError, ProtocolError) as e:
            retry = isinstance(e, VersionError) is False and e.errno in (errno.ENOENT, errno.EPROTO)
            if not retry or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


class Subscriber:
    """One reader: every message published after it joined, in order (``receive``, iteration)."""

    def __init__(self, seg: _Segment, history: int) -> None:
        self._s = seg
        self.name = seg.name
        self.policy = seg.policy
        self.missed = 0
        self._closed = False
        w = seg.w
        slot = -1
        for attempt in range(2):
            for i in range(seg.slots):
                if w.cas(seg.slot(i, _S_STATE), 0, 1):
                    slot = i
                    break
            if slot >= 0:
                break
            if attempt == 0:
                seg.sweep()
        if slot < 0:
            seg.release()
            raise IpckitError(errno.EBUSY, f"Cannot subscribe to pub-sub \"{seg.name}\": all slots are taken")
        self._slot = slot
        self._gen = (seg.add(seg.slot(slot, _S_GEN), 1) + 1) & _M
        w.store(seg.slot(slot, _S_TAG), _self_tag())
        w.store(seg.slot(slot, _S_ID), os.getpid())
        w.store(seg.slot(slot, _S_SLEEPING), 0)
        while True:
            n = w.load(_SLOT_LIMIT)
            if slot < n <= seg.slots or w.cas(_SLOT_LIMIT, n, slot + 1):
                break
        self._place(min(history, seg.history))

    def _place(self, history: int) -> None:
        s, w = self._s, self._s.w
        kmask = s.k - 1
        for attempt in range(100000):
            seq = w.load(_SEQ)
            base = w.load(s.index_at + 4 * (seq & kmask))
            if w.load(_SEQ) != seq:
                continue
            behind = (seq - w.load(_TAIL_SEQ)) & _M
            h = 0 if attempt > 50 else min(history, s.k - 2, behind)
            s0 = (seq - h) & _M
            pos = base
            if h > 0:
                pos = w.load(s.index_at + 4 * (s0 & kmask))
                if (w.load(s.word(pos, 1)) != (pos + 1) & _M or w.load(s.word(pos, 2)) != s0
                        or ((w.load(_SEQ) - seq) & _M) > s.k - 2):
                    continue
            if pos & 7:
                break
            self._r, self._seq = pos, s0
            w.store(s.slot(self._slot, _S_SEQ), s0)
            w.store(s.slot(self._slot, _S_READ), pos)
            w.store(s.slot(self._slot, _S_STATE), 2)
            t, wp = w.load(_TAIL), w.load(_WRITE)
            if _signed(pos - t) >= 0 and _signed(wp - pos) >= 0:
                return
        w.store(s.slot(self._slot, _S_STATE), 0)
        s.release()
        raise ProtocolError(errno.EPROTO, f"Cannot subscribe to pub-sub \"{s.name}\": no consistent start position")

    def _lag(self) -> None:
        s, w = self._s, self._s.w
        if _signed(self._r - w.load(_TAIL)) >= 0:
            return
        for _ in range(10000):
            t = w.load(_TAIL)
            ok = w.load(s.word(t, 1)) == (t + 1) & _M
            seq = w.load(s.word(t, 2))
            if not ok or w.load(_TAIL) != t:
                continue
            missed = (seq - self._seq) & _M
            if missed == 0 or missed > 1 << 31:
                raise ProtocolError(errno.EPROTO, f"Cannot receive from pub-sub \"{s.name}\": corrupt tail")
            self._r, self._seq, self.missed = t, seq, missed
            w.store(s.slot(self._slot, _S_SEQ), seq)
            w.store(s.slot(self._slot, _S_READ), t)
            raise LaggedError(missed, f"Cannot receive from pub-sub \"{s.name}\": lagged, missed {missed} messages")

    def try_receive(self) -> Optional[bytes]:
        """The next message, or None when there is none now. Raises LaggedError, ClosedError, ProtocolError."""
        if self._closed:
            raise ClosedError(errno.EBADF, f"Cannot receive from pub-sub \"{self.name}\": this subscriber is closed")
        s, w, r = self._s, self._s.w, self._r
        overwrite = s.policy == "overwrite"
        if w.load(s.word(r, 1)) != (r + 1) & _M:
            if overwrite:
                self._lag()
            if w.load(_FLAGS) & 1 and w.load(s.word(r, 1)) != (r + 1) & _M:
                raise ClosedError(errno.EPIPE, f"Cannot receive from pub-sub \"{self.name}\": the publisher closed it")
            return None
        n, seq = w.load(s.word(r, 0)), w.load(s.word(r, 2))
        if n > s.max_message or seq != self._seq:
            if overwrite:
                self._lag()
            raise ProtocolError(errno.EPROTO, f"Cannot receive from pub-sub \"{self.name}\": corrupt record at {r}")
        out = s.read(r, n)
        if overwrite:
            self._lag()
        self._r = (r + _record_size(n)) & _M
        self._seq = (seq + 1) & _M
        w.store(s.slot(self._slot, _S_SEQ), self._seq)
        w.store(s.slot(self._slot, _S_READ), self._r)
        if w.load(_PUB_SLEEPING):
            s.add(_PROGRESS, 1)
            _futex_wake(w.address + _PROGRESS)
        return out

    def receive(self, timeout: Optional[float] = None) -> bytes:
        """The next message, waiting; TimeoutError, PeerDiedError (publisher died), ClosedError at the end."""
        s, w = self._s, self._s.w
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            m = self.try_receive()
            if m is not None:
                return m
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"Cannot receive from pub-sub \"{self.name}\": nothing came in time")
            if not alive(w.load(_PUB_ID), w.load(_PUB_TAG)):
                m = self.try_receive()
                if m is not None:
                    return m
                raise PeerDiedError(errno.EOWNERDEAD, f"Cannot receive from pub-sub \"{self.name}\": its publisher died")
            flag = s.slot(self._slot, _S_SLEEPING)
            w.store(flag, 1)
            s.add(_SLEEPERS, 1)
            try:
                wp = w.load(_WRITE)
                if w.load(s.word(self._r, 1)) != (self._r + 1) & _M and not w.load(_FLAGS) & 1:
                    left = SLEEP_S if deadline is None else min(SLEEP_S, deadline - now)
                    _futex_wait(w.address + _WRITE, wp, left)
            finally:
                if s.exchange(flag, 0) == 1:
                    s.add(_SLEEPERS, -1)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                yield self.receive()
            except ClosedError:
                return

    def close(self) -> None:
        """Leaves: frees the slot (the publisher no longer waits for it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        s = self._s
        s.drop(self._slot, self._gen)
        s.add(_PROGRESS, 1)
        _futex_wake(s.w.address + _PROGRESS)
        s.release()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Publisher:
    """The one writer of a pub-sub segment it created; ``close()`` ends it and removes the name."""

    def __init__(self, seg: _Segment) -> None:
        self._s = seg
        self.name = seg.name
        self.policy = seg.policy
        self.max_message = seg.max_message
        self._w = self._t = self._tseq = self._seq = 0
        self._closed = False

    def _next(self, t: int) -> int:
        s, w = self._s, self._s.w
        n = w.load(s.word(t, 0))
        if w.load(s.word(t, 1)) != (t + 1) & _M or n > s.max_message:
            raise ProtocolError(errno.EPROTO, f"Cannot publish to pub-sub \"{self.name}\": corrupt record at {t}")
        nxt = (t + _record_size(n)) & _M
        if (nxt - t) & _M > (self._w - t) & _M:
            raise ProtocolError(errno.EPROTO, f"Cannot publish to pub-sub \"{self.name}\": corrupt record at {t}")
        return nxt

    def _set_tail(self, t: int, seq: int) -> None:
        self._t, self._tseq = t, seq
        self._s.w.store(_TAIL, t)
        self._s.w.store(_TAIL_SEQ, seq)

    def _room(self, size: int) -> bool:
        s, w = self._s, self._s.w
        t0 = t = self._t
        seq = self._tseq
        if ((self._w - t0) & _M) + size <= s.capacity:
            return True
        while ((self._w - t) & _M) + size > s.capacity:
            t, seq = self._next(t), (seq + 1) & _M
        if s.policy == "overwrite":
            self._set_tail(t, seq)
            return True
        w.store(_TAIL, t)
        span = stop = (t - t0) & _M
        for i in range(min(w.load(_SLOT_LIMIT), s.slots)):
            if w.load(s.slot(i, _S_STATE)) == 2:
                stop = min(stop, (w.load(s.slot(i, _S_READ)) - t0) & _M)
        if stop == span:
            self._set_tail(t, seq)
            return True
        t, seq = t0, self._tseq
        while True:
            nxt = self._next(t)
            if (nxt - t0) & _M > stop:
                break
            t, seq = nxt, (seq + 1) & _M
        self._set_tail(t, seq)
        return False

    def try_publish(self, message: Union[bytes, bytearray, memoryview]) -> bool:
        """Publishes now if there is room; False when a subscriber stops it (block policy)."""
        if self._closed:
            raise ClosedError(errno.EBADF, f"Cannot publish to pub-sub \"{self.name}\": it is closed")
        data = bytes(message)
        n = len(data)
        if n > self.max_message:
            raise MessageTooLargeError(errno.EMSGSIZE, f"Cannot publish {n} bytes to pub-sub \"{self.name}\"")
        s, w = self._s, self._s.w
        size = _record_size(n)
        if not self._room(size):
            return False
        p = self._w
        at = s.data_at + ((p + RECORD_HEADER) & s.mask)
        first = min(n, s.data_at + s.capacity - at)
        s.mapping[at:at + first] = data[:first]
        if first < n:
            s.mapping[s.data_at:s.data_at + n - first] = data[first:]
        nxt = (p + size) & _M
        w.store(s.word(p, 0), n)
        w.store(s.word(p, 2), self._seq)
        w.store(s.word(p, 3), 0)
        w.store(s.index_at + 4 * ((self._seq + 1) & (s.k - 1)), nxt)
        if nxt != (self._t + s.capacity) & _M:
            w.store(s.word(nxt, 1), 0)
        w.store(s.word(p, 1), (p + 1) & _M)
        self._w = nxt
        self._seq = (self._seq + 1) & _M
        w.store(_WRITE, nxt)
        w.store(_SEQ, self._seq)
        if w.load(_SLEEPERS):
            _futex_wake(w.address + _WRITE)
        return True

    def publish(self, message: Union[bytes, bytearray, memoryview], timeout: Optional[float] = None) -> None:
        """Publishes, waiting (block policy) for room; TimeoutError after ``timeout`` seconds."""
        s, w = self._s, self._s.w
        deadline = None if timeout is None else time.monotonic() + timeout
        checked = 0.0
        while not self.try_publish(message):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"Cannot publish to pub-sub \"{self.name}\": no room in time")
            if now - checked >= SLEEP_S:
                checked = now
                s.sweep()
            w.store(_PUB_SLEEPING, 1)
            try:
                progress = w.load(_PROGRESS)
                if not self._room(_record_size(len(message))):
                    left = SLEEP_S if deadline is None else min(SLEEP_S, deadline - now)
                    _futex_wait(w.address + _PROGRESS, progress, left)
            finally:
                w.store(_PUB_SLEEPING, 0)

    @property
    def subscriber_count(self) -> int:
        """Live subscribers now (dead ones are dropped)."""
        return 0 if self._closed else self._s.sweep()

    def close(self) -> None:
        """Ends publishing (subscribers receive everything, then ClosedError) and removes the name. Idempotent."""
        if self._closed:
            return
        self._closed = True
        s = self._s
        s.w.fetch_or(_FLAGS, 1)
        _futex_wake(s.w.address + _WRITE)
        _shm_unlink(self.name.encode())
        s.release()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscribe(name: str, history: int = 0, wait: float = 0.0) -> Subscriber:
    """Subscribes to the pub-sub segment ``name`` (waiting up to ``wait`` seconds for it to exist)."""
    return Subscriber(_open(name, "subscribe to", wait), history)


def publish_on(name: str, capacity: int = 1 << 20, policy: str = "block", history: int = 0,
               max_subscribers: int = 64, mode: int = 0o600) -> Publisher:
    """Creates the pub-sub segment ``name`` and returns its publisher."""
    if capacity < 64 or capacity > 1 << 30 or capacity & (capacity - 1):
        raise ValueError(f"Cannot create pub-sub \"{name}\": capacity must be a power of two from 64 to 2^30")
    if policy not in ("block", "overwrite") or not 1 <= max_subscribers <= MAX_SLOTS or not 0 <= history <= capacity // 16:
        raise ValueError(f"Cannot create pub-sub \"{name}\": bad policy, max_subscribers or history")
    k, _, data_at = _geometry(capacity, max_subscribers, history)
    fd = _shm_open(name.encode(), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    if fd < 0:
        e = __import__("ctypes").get_errno()
        raise IpckitError(e, f"Cannot create pub-sub \"{name}\": {os.strerror(e)}")
    try:
        os.ftruncate(fd, data_at + capacity)
        m = mmap.mmap(fd, data_at + capacity)
    except OSError:
        os.close(fd)
        _shm_unlink(name.encode())
        raise
    words = _Words(m)
    for off, value in ((_VERSION, VERSION), (_CAPACITY, capacity), (_SLOTS, max_subscribers), (_INDEX, k),
                       (_POLICY, 1 if policy == "overwrite" else 0), (_HISTORY, history), (_PUB_TAG, _self_tag()),
                       (_PUB_ID, os.getpid()), (_MAGIC, MAGIC)):
        words.store(off, value)
    words.release()
    m.close()
    return Publisher(_Segment(name, fd, "create"))
