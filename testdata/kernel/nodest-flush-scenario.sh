#!/bin/bash
# What happens to a deleted real server's connections: with expire_nodest_conn=0 they stay
# in the table (their packets are dropped) until they time out; with expire_nodest_conn=1 the
# kernel (>= 5.9) expires them when the server is deleted. Held connections (python sockets)
# through a NAT director; -Lnc right after -d. Run:
#   ../shared/tools/ipvs-vm/run-ipvs-vm -k trixie testdata/kernel/nodest-flush-scenario.sh > testdata/kernel/nodest-flush-6.12.txt
set -e
for m in ip_vs ip_vs_rr; do modprobe $m; done
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
for r in rs1 rs2; do
  ns $r python3 -c "
import socket
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 80)); s.listen(64); held=[]
while True: held.append(s.accept())" &
done
sleep 0.5
hold() {  # opens N connections and keeps them open for 30 s
  ns client python3 -c "
import socket,time
c=[socket.create_connection(('198.18.0.100',$1),timeout=3) for _ in range($2)]
time.sleep(30)" &
}
for mode in 0 1; do
  echo "== expire_nodest_conn=$mode"
  ns director sysctl -qw net.ipv4.vs.expire_nodest_conn=$mode
  ns director ipvsadm -C
  ns director ipvsadm -A -t 198.18.0.100:80 -s rr
  ns director ipvsadm -a -t 198.18.0.100:80 -r 198.18.2.2:80 -m
  ns director ipvsadm -a -t 198.18.0.100:80 -r 198.18.3.2:80 -m
  hold 80 4; sleep 1.5
  echo "-- before: connections to each server"
  ns director ipvsadm -Lnc | awk 'NR>2 {print $6}' | sort | uniq -c
  ns director ipvsadm -d -t 198.18.0.100:80 -r 198.18.2.2:80
  echo "-- right after deleting 198.18.2.2"
  ns director ipvsadm -Lnc | awk 'NR>2 {print $3, $6}' | sort | uniq -c
  sleep 1
  echo "-- one second later"
  ns director ipvsadm -Lnc | awk 'NR>2 {print $3, $6}' | sort | uniq -c
  sleep 0.1
done
