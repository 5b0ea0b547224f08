"""Another program, not ipckit: makes named OS objects with plain libc calls (ctypes) and Python's socket module,
prints one JSON line when they exist, and keeps them until its stdin ends. It never removes them: the test does.

    python3 other_program.py '{"shm": "/n", "mq": "/n", "sem": "/n", "fifo": "/p", "socket": "/p", "dgram": "/p"}'

Every key is optional. With "zombie": true it also forks a child that exits at once and is never reaped (a zombie
while this program lives); with "reuse": <pid> it makes a child take that pid (as root, by writing
/proc/sys/kernel/ns_last_pid; a few tries, as other forks may take it first). Their pids are printed as "zombie" and
"reused" (0 when it did not work).
"""
import ctypes
import json
import os
import socket
import sys
import time

libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.sem_open.restype = ctypes.c_void_p
spec = json.loads(sys.argv[1])
out = {"pid": os.getpid()}
keep = []


def fail(what):
    err = ctypes.get_errno()
    raise SystemExit(f"other_program: {what}: {os.strerror(err)}")


if "shm" in spec:
    fd = libc.shm_open(spec["shm"].encode(), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    if fd < 0:
        fail("shm_open")
    os.ftruncate(fd, 4096)
    os.close(fd)
if "mq" in spec:
    mqd = libc.mq_open(spec["mq"].encode(), os.O_CREAT | os.O_EXCL | os.O_RDWR, ctypes.c_uint(0o600), None)
    if mqd < 0:
        fail("mq_open")
    keep.append(mqd)
if "sem" in spec:
    sem = libc.sem_open(spec["sem"].encode(), os.O_CREAT | os.O_EXCL, ctypes.c_uint(0o600), ctypes.c_uint(1))
    if not sem:
        fail("sem_open")
if "fifo" in spec:
    os.mkfifo(spec["fifo"], 0o600)
if "socket" in spec:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(spec["socket"])
    s.listen()
    keep.append(s)
if "dgram" in spec:
    d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d.bind(spec["dgram"])
    keep.append(d)

children = []
if spec.get("zombie"):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    while True:  # wait until it is a zombie (state Z), without reaping it
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.005)
    out["zombie"] = pid
if "reuse" in spec:
    target = int(spec["reuse"])
    out["reused"] = 0
    for _ in range(50):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(target - 1))
        pid = os.fork()
        if pid == 0:
            libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: never outlive this program
            time.sleep(600)
            os._exit(0)
        children.append(pid)
        if pid == target:
            out["reused"] = pid
            break
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        children.pop()

print(json.dumps(out), flush=True)
sys.stdin.read()
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
