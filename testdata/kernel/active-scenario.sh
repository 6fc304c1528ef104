#!/bin/bash
# Which TCP states count as active, and what lc, wlc, sed, nq and ovf and an upper threshold
# make of connections that never finish their handshake (the SYNs come from an address nobody
# holds, so no reset answers the servers and every connection stays SYN_RECV). rs1 (weight 2) is added last, so it is first in the list;
# rs2 has weight 1. Six SYNs per scheduler, one after the other; after each, the server that
# took it and the ActiveConn/InActConn of both. Run:
#   ../shared/tools/ipvs-vm/run-ipvs-vm -k trixie testdata/kernel/active-scenario.sh > testdata/kernel/active-6.12.txt
#   ../shared/tools/ipvs-vm/run-ipvs-vm testdata/kernel/active-scenario.sh > testdata/kernel/active-6.1.txt
set -e
for m in ip_vs ip_vs_lc ip_vs_wlc ip_vs_sed ip_vs_nq ip_vs_ovf; do modprobe $m; done
echo "== kernel $(uname -r | cut -d. -f1,2)"
ns() { ip netns exec "$@"; }
for n in client director rs1 rs2; do ip netns add $n; ns $n ip link set lo up; done
link() {
  ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
  ns "$1" ip addr add "$3/24" dev "$2"; ns "$1" ip link set "$2" up
  ns "$4" ip addr add "$6/24" dev "$5"; ns "$4" ip link set "$5" up
}
link client eth0 198.18.1.2 director c0 198.18.1.1
link rs1 eth0 198.18.2.2 director r1 198.18.2.1
link rs2 eth0 198.18.3.2 director r2 198.18.3.1
ns client ip route add default via 198.18.1.1
ns rs1 ip route add default via 198.18.2.1
ns rs2 ip route add default via 198.18.3.1

ns director sysctl -qw net.ipv4.ip_forward=1
for r in rs1 rs2; do ns $r python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 80)); s.listen(100)
time.sleep(600)" & done
sleep 0.5
vip=100
run() {
  echo "#### $* ${X:+(rs1: $X)}"
  v=198.18.0.$vip; vip=$((vip + 1))
  ns director ip addr add $v/32 dev lo
  ns director ipvsadm -A -t $v:80 "$@"
  ns director ipvsadm -a -t $v:80 -r 198.18.3.2:80 -m -w 1
  ns director ipvsadm -a -t $v:80 -r 198.18.2.2:80 -m -w 2 $X
  ns client python3 -c "
import subprocess, time
from scapy.all import IP, TCP, send
names = {'198.18.2.2:80': 'rs1', '198.18.3.2:80': 'rs2'}
def ipvsadm(*a):
    return subprocess.run(['ip', 'netns', 'exec', 'director', 'ipvsadm', *a], capture_output=True, text=True).stdout
for i in range(1, 7):
    port = 41000 + i
    send(IP(src='198.18.1.50', dst='$v')/TCP(sport=port, dport=80, flags='S', seq=1000), verbose=0)
    time.sleep(0.2)
    to = [l.split() for l in ipvsadm('-Lnc').splitlines() if ' 198.18.1.50:%d ' % port in l and '$v:80' in l]
    counts = []
    svc = False
    for l in ipvsadm('-Ln').splitlines():
        f = l.split()
        if f and f[0] == 'TCP':
            svc = f[1] == '$v:80'
        elif svc and f and f[0] == '->' and f[1] in names:
            counts.append('%s %s/%s' % (names[f[1]], f[4], f[5]))
    print('SYN %d -> %s (%s); active/inactive: %s' % (i, names.get(to[0][5], to[0][5]) if to else 'none', to[0][2] if to else '-', '  '.join(counts)))
"
}
for s in lc wlc sed nq ovf; do X= run -s $s; done
X="-x 2" run -s lc
