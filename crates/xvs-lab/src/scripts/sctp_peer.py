"""A minimal SCTP peer over raw IP sockets, for labs whose kernel has no SCTP stack.

    sctp_peer.py serve NAME             answer as real server NAME, until killed
    sctp_peer.py open VIP PORT CPORT    INIT, COOKIE_ECHO, DATA; prints the server's name
    sctp_peer.py data VIP PORT CPORT    one DATA chunk; prints the server's name
    sctp_peer.py close VIP PORT CPORT   SHUTDOWN, SHUTDOWN_COMPLETE; prints the server's name

The server answers INIT with INIT_ACK (its name in the cookie), COOKIE_ECHO with COOKIE_ACK,
DATA with DATA "NAME <payload>", SHUTDOWN with SHUTDOWN_ACK, from the address the packet was
sent to (the VIP under direct routing, its own under NAT). Every packet carries a CRC32c that
the receiver checks: a packet changed on the way is reported and not answered. Each client
step waits 2 s at most for each answer and exits 1 without one.
"""

import socket
import struct
import sys
import time

POLY = 0x82F63B78
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ POLY if c & 1 else c >> 1
    TABLE.append(c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def chunk(t, value=b""):
    body = struct.pack("!BBH", t, 0, 4 + len(value)) + value
    return body + b"\0" * (-len(body) % 4)


def packet(sport, dport, chunks):
    p = struct.pack("!HHII", sport, dport, 1, 0) + chunks
    return p[:8] + struct.pack("<I", crc32c(p)) + p[12:]


def ip_header(src, dst, length):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, 64, 132, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    s = sum(struct.unpack("!10H", h))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return h[:10] + struct.pack("!H", ~s & 0xFFFF) + h[12:]


def raw():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    return s


def receive(s, deadline):
    """The next SCTP packet: (src, dst, sport, dport, first chunk type, its value), CRC checked."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            data = s.recv(65535)
        except socket.timeout:
            return None
        ihl = (data[0] & 15) * 4
        src, dst = socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20])
        p = data[ihl:]
        if len(p) < 16:
            continue
        want = struct.unpack("<I", p[8:12])[0]
        if crc32c(p[:8] + b"\0\0\0\0" + p[12:]) != want:
            print(f"bad checksum from {src}", file=sys.stderr, flush=True)
            continue
        sport, dport = struct.unpack("!HH", p[:4])
        t, _, length = struct.unpack("!BBH", p[12:16])
        return src, dst, sport, dport, t, p[16:12 + length]


def serve(name):
    s = raw()
    answers = {1: 2, 10: 11, 0: 0, 7: 8}  # INIT→INIT_ACK, COOKIE_ECHO→COOKIE_ACK, DATA→DATA, SHUTDOWN→SHUTDOWN_ACK
    while True:
        got = receive(s, time.monotonic() + 3600)
        if got is None:
            continue
        src, dst, sport, dport, t, value = got
        if t not in answers:
            continue
        if t == 1:
            value = name.encode()
        elif t == 0:
            value = name.encode() + b" " + value[12:]
        else:
            value = name.encode()
        p = packet(dport, sport, chunk(answers[t], value))
        s.sendto(ip_header(dst, src, len(p)) + p, (src, 0))


def client(step, vip, port, cport):
    s = raw()
    src = socket.inet_ntoa(struct.pack("!I", 0))
    # The source address: the one the kernel would use towards the VIP.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect((vip, port))
    src = u.getsockname()[0]
    u.close()
    exchange = {
        "open": [(1, b"init-params-----"), (10, b"cookie"), (0, b"\0" * 12 + b"hello")],
        "data": [(0, b"\0" * 12 + b"again")],
        "close": [(7, b"\0\0\0\0"), (14, None)],
    }[step]
    name = None
    for t, value in exchange:
        p = packet(cport, port, chunk(t, value or b""))
        s.sendto(ip_header(src, vip, len(p)) + p, (vip, 0))
        if value is None:
            break
        deadline = time.monotonic() + 2
        while True:
            got = receive(s, deadline)
            if got is None:
                print(f"no answer to chunk type {t}", file=sys.stderr)
                sys.exit(1)
            rsrc, _, rsport, rdport, rt, rvalue = got
            if (rsport, rdport) == (port, cport):
                break
        if rsrc != vip:
            print(f"answer from {rsrc}, not from the VIP", file=sys.stderr)
            sys.exit(1)
        name = rvalue.split(b" ")[0].decode()
        if rt == 0 and not rvalue.endswith(value[12:]):
            print(f"data answer {rvalue!r}", file=sys.stderr)
            sys.exit(1)
    print(name or "")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        client(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
