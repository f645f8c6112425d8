#!/usr/bin/env python3
"""The floor under any extra process on a request's path: a 1-byte ping-pong over loopback TCP.

    taskset -c 0 python3 bench/loopback-rtt.py server &
    taskset -c 1 python3 bench/loopback-rtt.py client 0        # back to back
    taskset -c 1 python3 bench/loopback-rtt.py client 0.0005   # 0.5 ms pauses: the peer idles

Prints p50 and p99 of 3,000 round trips. docs/benchmarks.md has this machine's.
"""
import socket
import sys
import time

PORT = 39999  # loopback only
ROUNDS = 3000


def server():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", PORT))
    s.listen(1)
    conn, _ = s.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(64):
        conn.sendall(data)


def client(pause):
    conn = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        conn.sendall(b"x")
        conn.recv(64)
        rtts.append((time.perf_counter() - start) * 1e6)
        if pause:
            time.sleep(pause)
    rtts.sort()
    print(f"pause {pause} s: p50 {rtts[len(rtts) // 2]:.0f} us, p99 {rtts[int(len(rtts) * 0.99)]:.0f} us")


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"]:
        server()
    elif sys.argv[1:2] == ["client"] and len(sys.argv) == 3:
        client(float(sys.argv[2]))
    else:
        sys.exit(__doc__)
