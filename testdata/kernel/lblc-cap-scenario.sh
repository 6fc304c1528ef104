#!/bin/bash
# lblc's table size (IP_VS_LBLC_TAB_SIZE * 16 = 16384): is a new entry refused beyond it, or is
# the size only the collector's business? A firewall-mark lblc service (mark 1) balances
# connections the director opens itself (raw SYNs carrying the mark, to 16400 destinations
# 10.0.x.y). Then destination 10.255.0.1 is scheduled once (to server S); S's weight drops to 1
# and the other's rises to 1000, so that a fresh choice would take the other; a second SYN to
# 10.255.0.1 still goes to S if its entry was stored. Run:
#   ../shared/tools/ipvs-vm/run-ipvs-vm -k trixie -t 300 testdata/kernel/lblc-cap-scenario.sh > testdata/kernel/lblc-cap-6.12.txt
set -e
for m in ip_vs ip_vs_lblc; do modprobe $m; done
echo "== kernel $(uname -r | cut -d. -f1,2)"
ns() { ip netns exec "$@"; }
for n in director rs1 rs2; do ip netns add $n; ns $n ip link set lo up; done
link() {
  ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
  ns "$1" ip addr add "$3/24" dev "$2"; ns "$1" ip link set "$2" up
  ns "$4" ip addr add "$6/24" dev "$5"; ns "$4" ip link set "$5" up
}
ip link add c0 netns director type dummy 2>/dev/null || ns director ip link add c0 type dummy
ns director ip addr add 198.18.1.1/24 dev c0; ns director ip link set c0 up
ns director ip route add 10.0.0.0/8 dev c0
link rs1 eth0 198.18.2.2 director r1 198.18.2.1
link rs2 eth0 198.18.3.2 director r2 198.18.3.1
ns rs1 ip route add default via 198.18.2.1
ns rs2 ip route add default via 198.18.3.1
ns director sysctl -qw net.ipv4.ip_forward=1
ns director ipvsadm -A -f 1 -s lblc
ns director ipvsadm -a -f 1 -r 198.18.2.2:80 -m -w 100
ns director ipvsadm -a -f 1 -r 198.18.3.2:80 -m -w 100
ns director python3 - <<'PY'
import socket, subprocess, time
from scapy.all import IP, TCP
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.SOL_SOCKET, 36, 1)  # SO_MARK
def syn(dst, sport):
    s.sendto(bytes(IP(src='198.18.1.1', dst=dst)/TCP(sport=sport, dport=80, flags='S', seq=1)), (dst, 0))
n = 0
for a in range(0, 66):
    for b in range(1, 253):
        if n == 16400:
            break
        syn('10.0.%d.%d' % (a, b), 1024 + n % 60000)
        n += 1
print('== %d destinations scheduled' % n)
time.sleep(2)
def dest_of(sport):
    out = subprocess.run(['ipvsadm', '-Lnc'], capture_output=True, text=True).stdout
    for l in out.splitlines():
        f = l.split()
        if len(f) >= 6 and f[3] == '198.18.1.1:%d' % sport and f[4].startswith('10.255.0.1:'):
            return f[5]
    return None
syn('10.255.0.1', 61001)
time.sleep(0.5)
first = dest_of(61001)
print('== the 16401st destination went to', first)
other = '198.18.3.2:80' if first == '198.18.2.2:80' else '198.18.2.2:80'
subprocess.run(['ipvsadm', '-e', '-f', '1', '-r', first, '-m', '-w', '1'], check=True)
subprocess.run(['ipvsadm', '-e', '-f', '1', '-r', other, '-m', '-w', '1000'], check=True)
time.sleep(0.5)
syn('10.255.0.1', 61002)
time.sleep(0.5)
second = dest_of(61002)
print('== after the weights change, the same destination went to', second,
      '(its entry was stored)' if second == first else '(no entry: scheduled afresh)')
PY
ns director ipvsadm -Ln
