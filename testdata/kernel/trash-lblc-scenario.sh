#!/bin/bash
# The trash of removed servers under lblc: the scheduler's entry for the VIP holds the server it
# names, so that server is not freed ~180 s after its deletion as under rr
# (trash-scenario.sh): added back 200 s later it keeps its counters. Same steps as
# trash-scenario.sh with -s lblc. Run:
#   ../shared/tools/ipvs-vm/run-ipvs-vm -k trixie -t 400 testdata/kernel/trash-lblc-scenario.sh > testdata/kernel/trash-lblc-6.12.txt
set -e
for m in ip_vs ip_vs_lblc; do modprobe $m; done
echo "== kernel $(uname -r)"
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
ns director ip addr add 198.18.0.100/32 dev lo
ns director sysctl -qw net.ipv4.ip_forward=1
for r in rs1 rs2; do mkdir -p /tmp/w$r; echo $r > /tmp/w$r/index.html; ns $r httpd -p 80 -h /tmp/w$r; done
ns director ipvsadm -A -t 198.18.0.100:80 -s lblc
ns director ipvsadm -a -t 198.18.0.100:80 -r 198.18.2.2:80 -m
ns director ipvsadm -a -t 198.18.0.100:80 -r 198.18.3.2:80 -m
# Four connections closed with a reset (CLOSE lasts 10 s; a FIN would leave TIME_WAIT's 2 min
# holding the servers), then 15 s for them to expire.
ns client python3 -c "
import socket, struct
for _ in range(4):
    s = socket.create_connection(('198.18.0.100', 80), timeout=3)
    s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); s.recv(100)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); s.close()"
sleep 15
echo "== connections left"; ns director ipvsadm -Lnc
echo "== before deleting"; ns director ipvsadm -Ln --stats
start=$(date +%s)
ns director ipvsadm -d -t 198.18.0.100:80 -r 198.18.2.2:80
ns director ipvsadm -d -t 198.18.0.100:80 -r 198.18.3.2:80
sleep 150
ns director ipvsadm -a -t 198.18.0.100:80 -r 198.18.2.2:80 -m
echo "== 198.18.2.2 added back $(( $(date +%s) - start )) s after its deletion"; ns director ipvsadm -Ln --stats
sleep 50
ns director ipvsadm -a -t 198.18.0.100:80 -r 198.18.3.2:80 -m
echo "== 198.18.3.2 added back $(( $(date +%s) - start )) s after its deletion"; ns director ipvsadm -Ln --stats
