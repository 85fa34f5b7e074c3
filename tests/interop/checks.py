"""Helpers shared by the interop test scripts: pass/fail bookkeeping and
loopback ports."""
import socket
import sys
import time

_count = {"passed": 0, "failed": 0}


def check(name, cond, detail=""):
    if cond:
        _count["passed"] += 1
        print(f"ok: {name}")
    else:
        _count["failed"] += 1
        print(f"FAIL: {name} {detail}")


def failures():
    return _count["failed"]


def finish():
    """Prints the tally and exits 1 if any check failed."""
    print(f"{_count['passed']} passed, {_count['failed']} failed")
    sys.exit(1 if _count["failed"] else 0)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for_port(port, seconds=10.0):
    """Waits until 127.0.0.1:port accepts connections: a gRPC channel whose
    first connection is refused backs off exponentially (15 s here)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False
