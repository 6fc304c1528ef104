# Holds N connections to each VIP port, then answers commands on stdin, one JSON line each:
#   ping  - every connection sends a line and must get it back ({"broken": n})
#   close - every connection half-closes and must see the server's clean EOF ({"broken": n})
# A reset, a timeout or a wrong answer counts as broken.
import json
import socket
import sys

vip, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ports = [int(p) for p in sys.argv[4:]]
conns = []
for p in ports:
    for _ in range(n):
        s = socket.create_connection((vip, p), timeout=5)
        s.settimeout(timeout)
        conns.append((s, s.makefile("rb")))


def ask(s, f, msg):
    s.sendall(msg + b"\n")
    return f.readline().strip()


servers = [ask(s, f, b"who").decode() for s, f in conns]
local = [s.getsockname()[1] for s, _ in conns]
print(json.dumps({"servers": servers, "ports": local}), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    bad = 0
    if cmd == "ping":
        for s, f in conns:
            try:
                if ask(s, f, b"ping") != b"ping":
                    bad += 1
            except OSError:
                bad += 1
        print(json.dumps({"broken": bad}), flush=True)
    elif cmd == "close":
        for s, f in conns:
            try:
                s.shutdown(socket.SHUT_WR)
                if f.read():
                    bad += 1
            except OSError:
                bad += 1
            s.close()
        print(json.dumps({"broken": bad}), flush=True)
        break
