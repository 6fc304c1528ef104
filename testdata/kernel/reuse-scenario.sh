#!/bin/bash
# conn_reuse_mode: a SYN on the 4-tuple of a closed connection. The kernel expires the old
# connection from its timer (ip_vs_conn_expire_now), after this packet: while the new SYN is
# scheduled, the old connection still counts against its server. Two servers under lc, rs1 first
# in the list (added last); a connection from port 40000 (to rs1), closed with a reset (CLOSE,
# inactive); the same port connects again: lc sees rs1 with one inactive connection and picks
# rs2. Then the same with conn_reuse_mode=0 from port 40001 (the SYN reuses the closed
# connection). The statistics are printed at once and 2.5 s later: the kernel shows the
# estimator's last 2-second snapshot, not live counters. Run:
#   ../shared/tools/ipvs-vm/run-ipvs-vm -k trixie testdata/kernel/reuse-scenario.sh > testdata/kernel/reuse-6.12.txt
#   ../shared/tools/ipvs-vm/run-ipvs-vm testdata/kernel/reuse-scenario.sh > testdata/kernel/reuse-6.1.txt
set -e
for m in ip_vs ip_vs_lc; do modprobe $m; done
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
ns director ip addr add 198.18.0.100/32 dev lo
ns director sysctl -qw net.ipv4.ip_forward=1
for r in rs1 rs2; do mkdir -p /tmp/w$r; echo $r > /tmp/w$r/index.html; ns $r httpd -p 80 -h /tmp/w$r; done
get() {
  ns client python3 -c "
import socket, struct
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('198.18.1.2', $1))
s.settimeout(3); s.connect(('198.18.0.100', 80)); s.sendall(b'GET / HTTP/1.0\r\n\r\n')
body = b''
while True:
    d = s.recv(1000)
    if not d: break
    body += d
print('port $1 answered by', body.split(b'\r\n\r\n', 1)[1].decode().strip())
if '$2' == 'rst':
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
s.close()"
}
port=40000
for mode in 1 0; do
  ns director sysctl -qw net.ipv4.vs.conn_reuse_mode=$mode
  ns director ipvsadm -C
  ns director ipvsadm -A -t 198.18.0.100:80 -s lc
  ns director ipvsadm -a -t 198.18.0.100:80 -r 198.18.3.2:80 -m
  ns director ipvsadm -a -t 198.18.0.100:80 -r 198.18.2.2:80 -m
  echo "#### conn_reuse_mode=$mode"
  ns director ipvsadm -Ln
  get $port rst
  sleep 0.5
  echo "== after the first connection (closed with a reset)"
  ns director ipvsadm -Lnc | sed 1,2d | awk '{print $1, $3, $4, $5, $6}' | grep ":$port "
  ns director ipvsadm -Ln | sed 1,3d
  get $port rst
  sleep 0.5
  echo "== after the second connection from the same port"
  ns director ipvsadm -Lnc | sed 1,2d | awk '{print $1, $3, $4, $5, $6}' | grep ":$port " | sort
  ns director ipvsadm -Ln | sed 1,3d
  echo "== statistics now, and 2.5 s later"
  ns director ipvsadm -Ln --stats | sed 1,3d
  sleep 2.5
  ns director ipvsadm -Ln --stats | sed 1,3d
  port=40001
done
