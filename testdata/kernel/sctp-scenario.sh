#!/bin/bash
# SCTP connection states in IPVS, cell by cell. Every reachable cell of the state table
# [direction][event][state] is driven on a connection of its own (a client port of its own):
# the packets that lead to the state, then the one event; the state /proc/net/ip_vs_conn shows
# afterwards is printed. Direct routing gives the input-only direction, NAT gives input and
# output (the real server's packets are injected on its link and forwarded by the director).
# Also: which first chunk opens a connection (sloppy_sctp 0 and 1), an ABORT bundled after a
# COOKIE_ECHO, ActiveConn for each state, an INIT on a CLOSED association (conn_reuse_mode), and
# the timeouts of the states. Nothing answers: the neighbours are fixed to MACs nobody has.
# Run:
#   ../shared/tools/ipvs-vm/run-ipvs-vm -k trixie -t 300 testdata/kernel/sctp-scenario.sh > testdata/kernel/sctp-6.12.txt
#   ../shared/tools/ipvs-vm/run-ipvs-vm -t 300 testdata/kernel/sctp-scenario.sh > testdata/kernel/sctp-6.1.txt
set -e
for m in ip_vs ip_vs_rr; do modprobe $m; done
echo "== kernel $(uname -r | cut -d. -f1,2)"
ns() { ip netns exec "$@"; }
# The director is the VM's own namespace; the client and the real servers' link are netns.
for n in client rs; do ip netns add $n; ns $n ip link set lo up; done
ip link set lo up
ip link add c0 type veth peer name eth0 netns client
ip link add r0 type veth peer name eth0 netns rs
ip addr add 198.18.1.1/24 dev c0; ip link set c0 up
ip addr add 198.18.2.1/24 dev r0; ip link set r0 up
ns client ip link set eth0 up; ns rs ip link set eth0 up
ip neigh replace 198.18.1.2 lladdr 02:00:00:00:01:02 dev c0 nud permanent
for i in 2 3 4 5; do ip neigh replace 198.18.2.$i lladdr 02:00:00:00:02:0$i dev r0 nud permanent; done
ip addr add 198.18.0.100/32 dev lo
sysctl -qw net.ipv4.ip_forward=1
for k in all default c0 r0 lo; do sysctl -qw net.ipv4.conf.$k.rp_filter=0; done
# DR service :5000 (input-only), NAT service :6000 (input and output); two servers each.
ipvsadm -A --sctp-service 198.18.0.100:5000 -s rr
ipvsadm -a --sctp-service 198.18.0.100:5000 -r 198.18.2.2:5000 -g
ipvsadm -a --sctp-service 198.18.0.100:5000 -r 198.18.2.3:5000 -g
ipvsadm -A --sctp-service 198.18.0.100:6000 -s rr
ipvsadm -a --sctp-service 198.18.0.100:6000 -r 198.18.2.4:6000 -m
ipvsadm -a --sctp-service 198.18.0.100:6000 -r 198.18.2.5:6000 -m
ipvsadm -Ln
cat > /tmp/sctp.py <<'PY'
import ctypes, os, socket, time
from scapy.all import Ether, IP, SCTP, Raw, raw, get_if_hwaddr
libc = ctypes.CDLL(None, use_errno=True)
def packet_socket(netns, dev):
    me = os.open('/proc/self/ns/net', os.O_RDONLY)
    fd = os.open('/run/netns/' + netns, os.O_RDONLY)
    assert libc.setns(fd, 0) == 0
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((dev, 0))
    assert libc.setns(me, 0) == 0
    os.close(fd); os.close(me)
    return s
cli = packet_socket('client', 'eth0')
srv = packet_socket('rs', 'eth0')
c0 = get_if_hwaddr('c0'); r0 = get_if_hwaddr('r0')
VIP = '198.18.0.100'; CLIENT = '198.18.1.2'
EV = ['DATA', 'INIT', 'INIT_ACK', 'COOKIE_ECHO', 'COOKIE_ACK', 'SHUTDOWN', 'SHUTDOWN_ACK',
      'SHUTDOWN_COMPLETE', 'ERROR', 'ABORT']
CHUNK = {'DATA': 0, 'INIT': 1, 'INIT_ACK': 2, 'COOKIE_ECHO': 10, 'COOKIE_ACK': 11, 'SHUTDOWN': 7,
         'SHUTDOWN_ACK': 8, 'SHUTDOWN_COMPLETE': 14, 'ERROR': 9, 'ABORT': 6}
def chunk(t, n=20):
    return bytes([t, 0]) + n.to_bytes(2, 'big') + bytes(n - 4)
def send(d, cport, vport, chunks, rs=None):
    if d == 'in':
        p = Ether(dst=c0, src='02:00:00:00:01:02') / IP(src=CLIENT, dst=VIP) / SCTP(sport=cport, dport=vport, tag=1)
        cli.send(raw(p / Raw(chunks)))
    else:
        p = Ether(dst=r0, src='02:00:00:00:02:99') / IP(src=rs, dst=CLIENT) / SCTP(sport=vport, dport=cport, tag=1)
        srv.send(raw(p / Raw(chunks)))
def conn(cport, vport):
    for line in open('/proc/net/ip_vs_conn').read().splitlines()[1:]:
        f = line.split()
        if f[0] == 'SCTP' and int(f[2], 16) == cport and int(f[4], 16) == vport:
            rs = '.'.join(str(int(f[5][i:i + 2], 16)) for i in (0, 2, 4, 6))
            return f[7], rs, int(f[8])
    return None, None, None
port = [20000]
def run(vport, path):
    """Sends the path's packets on a fresh client port; returns (state, server) after each."""
    port[0] += 1
    cport = port[0]
    rs = None; seen = []
    for d, ev in path:
        if d == 'out' and rs is None:
            seen.append(None); continue
        send(d, cport, vport, chunk(CHUNK[ev]), rs)
        time.sleep(0.002)
        st, rs2, _ = conn(cport, vport)
        rs = rs2 or rs
        seen.append(st)
    return seen
def explore(name, vport, dirs):
    print('== cells', name, '(from a connection opened by INIT: path, direction, event -> state)')
    paths = {}
    st = run(vport, [('in', 'INIT')])[-1]
    paths[st] = [('in', 'INIT')]
    todo = [st]
    while todo:
        s = todo.pop(0)
        for d in dirs:
            for ev in EV:
                path = paths[s] + [(d, ev)]
                seen = run(vport, path)
                nxt = seen[-1]
                print(f'{name} {d} {ev} {s} -> {nxt}')
                if nxt is not None and nxt not in paths:
                    paths[nxt] = path
                    todo.append(nxt)
    print('== paths', name)
    for s, p in sorted(paths.items()):
        print(name, s, ' '.join(f'{d}:{e}' for d, e in p))
explore('dr', 5000, ['in'])
explore('nat', 6000, ['in', 'out'])
def opens(sloppy):
    os.system(f'sysctl -qw net.ipv4.vs.sloppy_sctp={sloppy}')
    for ev in EV + ['UNKNOWN_0x40']:
        port[0] += 1
        t = 0x40 if ev.startswith('UNKNOWN') else CHUNK[ev]
        send('in', port[0], 5000, chunk(t))
        time.sleep(0.002)
        print(f'sloppy_sctp={sloppy} first chunk {ev}: {conn(port[0], 5000)[0] or "no connection"}')
print('== which first chunk opens a connection')
opens(0); opens(1)
os.system('sysctl -qw net.ipv4.vs.sloppy_sctp=0')
print('== bundles (DR): first chunk, second chunk -> state from INIT1')
for a, b in [('COOKIE_ECHO', 'ABORT'), ('COOKIE_ACK', 'ABORT'), ('DATA', 'ABORT'), ('COOKIE_ECHO', 'DATA')]:
    port[0] += 1
    send('in', port[0], 5000, chunk(CHUNK['INIT']))
    send('in', port[0], 5000, chunk(CHUNK[a], 22) + bytes(2) + chunk(CHUNK[b]))
    time.sleep(0.002)
    print(f'{a}+{b}: {conn(port[0], 5000)[0]}')
print('== ActiveConn and timeout per state (DR, a service of its own for each path)')
def active(vport):
    out = os.popen(f'ipvsadm -Ln --sctp-service 198.18.0.100:{vport}').read().split('\n')
    return sum(int(l.split()[4]) for l in out if l.strip().startswith('->') and 'RemoteAddress' not in l)
paths = (['INIT'], ['INIT', 'INIT'], ['INIT', 'COOKIE_ECHO'], ['INIT', 'COOKIE_ECHO', 'DATA'],
         ['INIT', 'COOKIE_ECHO', 'SHUTDOWN'], ['INIT', 'COOKIE_ECHO', 'SHUTDOWN', 'SHUTDOWN_COMPLETE'],
         ['INIT', 'ABORT'], ['INIT', 'INIT_ACK'])
for i, path in enumerate(paths):
    vport = 7000 + i
    os.system(f'ipvsadm -A --sctp-service 198.18.0.100:{vport} -s rr; ipvsadm -a --sctp-service 198.18.0.100:{vport} -r 198.18.2.2:{vport} -g')
    port[0] += 1
    for ev in path:
        send('in', port[0], vport, chunk(CHUNK[ev]))
    time.sleep(0.002)
    st, _, exp = conn(port[0], vport)
    print(f'{" ".join(path)}: {st} expires {exp} s, ActiveConn {active(vport)}')
print('== INIT on a CLOSED association (DR, two servers, rr): the same server or the next')
for mode in (1, 0):
    os.system(f'sysctl -qw net.ipv4.vs.conn_reuse_mode={mode}')
    port[0] += 1
    for ev in ['INIT', 'COOKIE_ECHO', 'ABORT']:
        send('in', port[0], 5000, chunk(CHUNK[ev]))
    time.sleep(0.002)
    before = conn(port[0], 5000)
    send('in', port[0], 5000, chunk(CHUNK['INIT']))
    time.sleep(0.002)
    after = conn(port[0], 5000)
    print(f'conn_reuse_mode={mode}: before {before[0]} on {before[1]}, after INIT {after[0]} on {after[1]}')
PY
python3 /tmp/sctp.py
