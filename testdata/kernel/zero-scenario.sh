#!/bin/bash
# What ipvsadm shows: the estimator's last 2-second snapshot of the counters, minus the zero
# point -Z took from that same snapshot. One connection is made just after a tick, listed at
# once (not shown yet), -Z'd, listed again 2.5 s later: it shows up after the zeroing, because
# the zero point was the snapshot from before it. Run:
#   ../shared/tools/ipvs-vm/run-ipvs-vm -k trixie testdata/kernel/zero-scenario.sh > testdata/kernel/zero-6.12.txt
#   ../shared/tools/ipvs-vm/run-ipvs-vm testdata/kernel/zero-scenario.sh > testdata/kernel/zero-6.1.txt
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
mkdir -p /tmp/w; echo rs1 > /tmp/w/index.html; ns rs1 httpd -p 80 -h /tmp/w
ns director ipvsadm -A -t 198.18.0.100:80 -s rr
ns director ipvsadm -a -t 198.18.0.100:80 -r 198.18.2.2:80 -m
get() { ns client wget -q -O /dev/null http://198.18.0.100/; }
conns() { ns director ipvsadm -Ln --stats | awk 'NR==4 {print $3}'; }
get
# Wait for the tick that shows that first connection: we are then just after a tick.
for i in $(seq 50); do [ "$(conns)" = 1 ] && break; sleep 0.1; done
echo "== just after a tick: $(conns) connection(s) shown"
get
echo "== a second connection made; shown at once: $(conns)"
ns director ipvsadm -Z
echo "== zeroed; shown: $(conns)"
sleep 2.5
echo "== 2.5 s later, after the next tick: $(conns) (the second connection, made before -Z)"
ns director ipvsadm -Ln --stats
