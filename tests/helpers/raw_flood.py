"""A raw, hostile stream peer for tests/hostile_streams.test.ts: no ipckit, just bytes on sockets.

    python3 raw_flood.py ADDRESS COUNT UNIT_HEX CAP STALL_SECONDS

ADDRESS is a Unix socket path, or HOST:PORT for TCP. Opens COUNT connections and writes, on each, the endless
repetition of UNIT (hex; e.g. "00000000" is a stream of empty length-framed messages) in non-blocking mode: a socket
stops when it has written CAP bytes, when the kernel took nothing more for STALL_SECONDS (the reader stopped
reading), or when the other side closed it. Then prints one JSON line: {"sent": [bytes per socket], "closed":
[true when the server closed that socket]}. The bytes in "sent" are what the kernel accepted, exactly.

Then it waits for a line on stdin. "finish": each open socket (blocking again) completes the UNIT it was cut in, so
the stream ends between messages, half-closes, and waits (up to 60 s) for the server's end; it prints "done". Any
other line, or EOF: it exits at once.
"""
import json
import select
import socket
import sys
import time

address, count, unit, cap, stall = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), int(sys.argv[4]), float(
    sys.argv[5]
)
BLOCK = 65536
# The unit repeated to at least BLOCK bytes, plus one more unit: any window of BLOCK bytes starting inside the first
# unit is then a slice of it.
pattern = unit * (BLOCK // len(unit) + 2)


def connect():
    if ":" in address and not address.startswith("/"):
        host, port = address.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(address)
    return s


socks = [connect() for _ in range(count)]
for s in socks:
    s.setblocking(False)
sent = [0] * count
closed = [False] * count
done = [False] * count
last = [time.monotonic()] * count

while not all(done):
    active = [i for i in range(count) if not done[i]]
    readable, writable, _ = select.select([socks[i] for i in active], [socks[i] for i in active], [], 0.05)
    now = time.monotonic()
    for i in active:
        s = socks[i]
        if s in readable:
            try:
                if s.recv(65536) == b"":
                    closed[i] = done[i] = True
                    continue
            except (ConnectionResetError, BrokenPipeError):
                closed[i] = done[i] = True
                continue
            except BlockingIOError:
                pass
        if s in writable:
            start = sent[i] % len(unit)
            n = min(BLOCK, cap - sent[i])
            try:
                took = s.send(pattern[start : start + n])
            except BlockingIOError:
                took = 0
            except (ConnectionResetError, BrokenPipeError):
                closed[i] = done[i] = True
                continue
            if took > 0:
                sent[i] += took
                last[i] = now
        if sent[i] >= cap or now - last[i] > stall:
            done[i] = True

print(json.dumps({"sent": sent, "closed": closed}), flush=True)

if sys.stdin.readline().strip() == "finish":
    for i, s in enumerate(socks):
        if closed[i]:
            continue
        s.setblocking(True)
        s.settimeout(60)
        try:
            rest = (-sent[i]) % len(unit)
            s.sendall(pattern[sent[i] % len(unit) :][:rest])
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536) != b"":
                pass
        except OSError:
            pass
    print("done", flush=True)
for s in socks:
    s.close()
