#!/bin/bash
# The sip persistence engine's Call-ID parser: one UDP datagram per payload of sip-payloads.txt
# (hex, one per line), each from a client address of its own (198.18.1.100 + line), to a
# persistent one-packet service with --pe sip; the Call-ID the kernel keeps is the pe data of
# that client's template in /proc/net/ip_vs_conn (none: the datagram was dropped).
# Printed: the payload's line number and the Call-ID in hex, or "-". Run:
#   ../shared/tools/ipvs-vm/run-ipvs-vm -k trixie testdata/kernel/sip-scenario.sh testdata/kernel/sip-payloads.txt > testdata/kernel/sip-6.12.txt
#   ../shared/tools/ipvs-vm/run-ipvs-vm testdata/kernel/sip-scenario.sh testdata/kernel/sip-payloads.txt > testdata/kernel/sip-6.1.txt
set -e
for m in ip_vs ip_vs_rr ip_vs_pe_sip; do modprobe $m; done
echo "== kernel $(uname -r | cut -d. -f1,2)"
ns() { ip netns exec "$@"; }
for n in client director rs1; do ip netns add $n; ns $n ip link set lo up; done
link() {
  ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
  ns "$1" ip addr add "$3/24" dev "$2"; ns "$1" ip link set "$2" up
  ns "$4" ip addr add "$6/24" dev "$5"; ns "$4" ip link set "$5" up
}
link client eth0 198.18.1.2 director c0 198.18.1.1
link rs1 eth0 198.18.2.2 director r1 198.18.2.1
ns client ip route add default via 198.18.1.1
for i in $(seq 1 60); do ns client ip addr add 198.18.1.$((100 + i))/24 dev eth0; done
ns rs1 ip route add default via 198.18.2.1
ns director ip addr add 198.18.0.100/32 dev lo
ns director sysctl -qw net.ipv4.ip_forward=1
ns director ipvsadm -A -u 198.18.0.100:5060 -s rr -p 300 -o --pe sip
ns director ipvsadm -a -u 198.18.0.100:5060 -r 198.18.2.2:5060 -m
ns client python3 - <<'PY'
import socket, subprocess, time
lines = [l.strip() for l in open('/scenario/sip-payloads.txt') if l.strip()]
for i, h in enumerate(lines, 1):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('198.18.1.%d' % (100 + i), 5060))
    s.sendto(bytes.fromhex(h), ('198.18.0.100', 5060))
    s.close()
    time.sleep(0.1)
    out = subprocess.run(['ip', 'netns', 'exec', 'director', 'cat', '/proc/net/ip_vs_conn'], capture_output=True).stdout
    mine = b' %08X 0000 ' % (0xC6120164 + i)
    ids = [row.split(b' sip ', 1)[1] for row in out.split(b'\n') if mine in row and b' sip ' in row]
    print(i, ids[0].hex() if ids else '-')
PY
echo "== connections the kernel made"
ns director ipvsadm -Ln --stats | sed 1,3d
