#!/bin/bash
# A direct-routing connection whose real server's replies pass back through the director (the
# server's default route), the client closing first. Does the kernel see the replies (its out
# lookup matches a reply by the real server's address, and a DR server answers from the VIP),
# and which state does the connection reach: FIN_WAIT (input-only table) or TIME_WAIT? The
# director holds the VIP (IPVS needs it for LOCAL_IN) and accepts packets from it on r1
# (accept_local), or the replies would be dropped as martians. Run:
#   ../shared/tools/ipvs-vm/run-ipvs-vm -k trixie testdata/kernel/dr-replies-scenario.sh > testdata/kernel/dr-replies-6.12.txt
#   ../shared/tools/ipvs-vm/run-ipvs-vm testdata/kernel/dr-replies-scenario.sh > testdata/kernel/dr-replies-6.1.txt
set -e
for m in ip_vs ip_vs_rr; do modprobe $m; done
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
ns rs1 ip route add default via 198.18.2.1
ns director ip addr add 198.18.0.100/32 dev lo
ns director sysctl -qw net.ipv4.ip_forward=1
for k in all.rp_filter r1.rp_filter c0.rp_filter; do ns director sysctl -qw net.ipv4.conf.$k=0; done
ns director sysctl -qw net.ipv4.conf.r1.accept_local=1
ns rs1 ip addr add 198.18.0.100/32 dev lo
ns rs1 sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
mkdir -p /tmp/w; echo rs1 > /tmp/w/index.html; ns rs1 httpd -p 80 -h /tmp/w
ns director ipvsadm -A -t 198.18.0.100:80 -s rr
ns director ipvsadm -a -t 198.18.0.100:80 -r 198.18.2.2:80 -g
ns client python3 -c "
import socket, time
s = socket.create_connection(('198.18.0.100', 80), timeout=3)
s.sendall(b'GET / HTTP/1.0\r\n\r\n')
print('answer:', s.recv(1000).split(b'\r\n\r\n', 1)[-1].decode().strip())
time.sleep(0.3)
s.shutdown(socket.SHUT_WR)
while s.recv(1000): pass
s.close()"
sleep 0.5
echo "== the connection after both sides closed (client first)"
ns director ipvsadm -Lnc | sed 1,2d | awk '{print $1, $3, $4, $5, $6}'
echo "== director counters (OutPkts: replies IPVS saw)"
ns director ipvsadm -Ln --stats | sed 1,2d
sleep 2.2
ns director ipvsadm -Ln --stats | sed 1,3d
