#!/bin/sh
# record-master.sh — record what a real kernel sync master (ipvsadm --start-daemon master)
# puts on the wire, for xvs-sync's tests. Run in the IPVS VM:
#   run-ipvs-vm -t 300 -o testdata/sync/kernel-6.1 testdata/sync/record-master.sh
#
# Topology (all netns):
#   client 198.18.1.2 ─┐                       ┌─ r3 198.18.2.1 ── rs3 198.18.2.2   (NAT, default via director)
#   rs1    198.18.1.3 ─┴─ br0 198.18.1.1 director
#     (DR: VIP 198.18.1.100 on lo)            └─ s0 10.0.0.1 ── backup 10.0.0.2  (sync multicast listener)
#   NAT VIPs on the director's lo: 198.18.0.100 (tcp 80, 8080, udp 53), 198.18.0.101 (tcp 80, -p 60),
#   2001:db8::100 (tcp 80 → [2001:db8:2::2]:80).
# The master syncs on s0 with sync ID 7; a python UDP socket in "backup" joined to 224.0.0.81
# writes each datagram's payload as one hex line.
# Phase 1 uses net.ipv4.vs.sync_version=1 (default), phase 2 sync_version=0.
# Output ($OUT): datagrams-v1.hex, datagrams-v0.hex, lnc-v1.txt, lnc-v0.txt (ipvsadm -Lnc after
# each phase), ip_vs_conn-v1.txt, ip_vs_conn-v0.txt, daemon.txt (ipvsadm -L --daemon),
# services.txt (ipvsadm -Ln), sysctl.txt. The host keeps stdout as run.log.
set -e
OUT=${OUT:-/out}
mkdir -p "$OUT"
for m in ip_vs ip_vs_rr; do modprobe $m; done
echo "== kernel $(uname -r): $(head -1 /proc/net/ip_vs)"

ns() { ip netns exec "$@"; }
for n in director client rs1 rs3 backup; do ip netns add $n; ns $n ip link set lo up; done

# L2 segment for the client and the DR real server.
ns director ip link add br0 type bridge
ns director ip addr add 198.18.1.1/24 dev br0
ns director ip addr add 198.18.1.100/32 dev br0
ns director ip -6 addr add 2001:db8:1::1/64 dev br0 nodad
ns director ip link set br0 up
i=1
for n in client rs1; do
  i=$((i + 1))
  ip link add eth0 netns $n type veth peer name p-$n netns director
  ns director ip link set p-$n master br0 up
  ns $n ip addr add 198.18.1.$i/24 dev eth0
  ns $n ip -6 addr add 2001:db8:1::$i/64 dev eth0 nodad
  ns $n ip link set eth0 up
done
ns client ip route add default via 198.18.1.1
ns client ip -6 route add default via 2001:db8:1::1

# rs1: DR real server, VIP on lo, ARP-silenced.
ns rs1 sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
ns rs1 ip addr add 198.18.1.100/32 dev lo
mkdir -p /tmp/www; echo hello > /tmp/www/index.html
ns rs1 httpd -p 80 -h /tmp/www

# rs3: NAT real server on its own link, default route back through the director.
ip link add eth0 netns rs3 type veth peer name r3 netns director
ns director ip addr add 198.18.2.1/24 dev r3
ns director ip -6 addr add 2001:db8:2::1/64 dev r3 nodad
ns director ip link set r3 up
ns rs3 ip addr add 198.18.2.2/24 dev eth0
ns rs3 ip -6 addr add 2001:db8:2::2/64 dev eth0 nodad
ns rs3 ip link set eth0 up
ns rs3 ip route add default via 198.18.2.1
ns rs3 ip -6 route add default via 2001:db8:2::1
ns rs3 httpd -p 80 -h /tmp/www
# Holds one connection open: nc's stdin never ends, so it never sends a FIN.
ns rs3 sh -c 'sleep 600 | nc -l -p 8080 >/dev/null 2>&1 &'

# Sync link.
ip link add s0 netns director type veth peer name eth0 netns backup
ns director ip addr add 10.0.0.1/24 dev s0; ns director ip link set s0 up
ns backup ip addr add 10.0.0.2/24 dev eth0; ns backup ip link set eth0 up

ns director ip addr add 198.18.0.100/32 dev lo
ns director ip addr add 198.18.0.101/32 dev lo
ns director ip -6 addr add 2001:db8::100/128 dev lo
ns director sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

D="ns director ipvsadm"
$D -A -t 198.18.0.100:80 -s rr;   $D -a -t 198.18.0.100:80 -r 198.18.2.2:80 -m
$D -A -t 198.18.0.100:8080 -s rr; $D -a -t 198.18.0.100:8080 -r 198.18.2.2:8080 -m
$D -A -u 198.18.0.100:53 -s rr;   $D -a -u 198.18.0.100:53 -r 198.18.2.2:53 -m
$D -A -t 198.18.1.100:80 -s rr;   $D -a -t 198.18.1.100:80 -r 198.18.1.3:80 -g
$D -A -t 198.18.0.101:80 -s rr -p 60; $D -a -t 198.18.0.101:80 -r 198.18.2.2:80 -m
$D -A -t [2001:db8::100]:80 -s rr; $D -a -t [2001:db8::100]:80 -r [2001:db8:2::2]:80 -m

cat > /tmp/listen.py <<'PY'
import socket, struct, sys
out = open(sys.argv[1], "w", buffering=1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("224.0.0.81", 8848))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4s", socket.inet_aton("224.0.0.81"), socket.inet_aton("10.0.0.2")))
print("listening", flush=True)
while True:
    data, src = s.recvfrom(65535)
    out.write(data.hex() + "\n")
PY

cat > /tmp/udp.py <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.1.2", int(sys.argv[1])))
for i in range(5):
    s.sendto(b"q%d" % i, ("198.18.0.100", 53))
PY

cat > /tmp/hold.py <<'PY'
# One TCP connection that sends 5 segments, then stays ESTABLISHED until killed.
import socket, time
s = socket.create_connection(("198.18.0.100", 8080))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for i in range(5):
    s.send(b"x"); time.sleep(0.2)
time.sleep(600)
PY

listen() {  # listen FILE: start the listener, wait until it has joined
  # `ip netns exec` directly, not the `ns` function: $! must be the listener itself, not a
  # subshell that a kill would leave the listener running behind.
  ip netns exec backup python3 /tmp/listen.py "$1" > /tmp/listen.log 2>&1 &
  LPID=$!
  for _ in $(seq 50); do grep -q listening /tmp/listen.log 2>/dev/null && break; sleep 0.2; done
}
wget_() { ns client timeout 5 wget -q -O /dev/null "$1" && echo "ok $1" || echo "FAILED $1"; }

$D --start-daemon master --mcast-interface s0 --syncid 7
sleep 1

echo "== phase 1: sync_version $(ns director sysctl -n net.ipv4.vs.sync_version)"
listen "$OUT/datagrams-v1.hex"
wget_ http://198.18.0.100/
wget_ http://198.18.0.100/
wget_ http://198.18.1.100/
wget_ http://198.18.1.100/
wget_ http://198.18.0.101/
wget_ http://198.18.0.101/
wget_ 'http://[2001:db8::100]/'
ns client python3 /tmp/udp.py 40000
ip netns exec client python3 /tmp/hold.py > /dev/null 2>&1 &
HPID=$!
sleep 5   # the master flushes a partly filled buffer after 2 s; its thread wakes every 1 s
$D -Lnc > "$OUT/lnc-v1.txt"
ns director cat /proc/net/ip_vs_conn > "$OUT/ip_vs_conn-v1.txt"
kill $LPID; wait $LPID 2>/dev/null || true
echo "phase 1: $(wc -l < "$OUT/datagrams-v1.hex") datagrams"

echo "== phase 2: sync_version 0"
ns director sysctl -qw net.ipv4.vs.sync_version=0
listen "$OUT/datagrams-v0.hex"
wget_ http://198.18.0.100/
wget_ http://198.18.1.100/
wget_ http://198.18.0.101/
ns client python3 /tmp/udp.py 40001
sleep 5
$D -Lnc > "$OUT/lnc-v0.txt"
ns director cat /proc/net/ip_vs_conn > "$OUT/ip_vs_conn-v0.txt"
kill $LPID; wait $LPID 2>/dev/null || true
echo "phase 2: $(wc -l < "$OUT/datagrams-v0.hex") datagrams"
kill $HPID 2>/dev/null || true

$D -L --daemon > "$OUT/daemon.txt"
$D -Ln > "$OUT/services.txt"
ns director sysctl -a 2>/dev/null | grep '^net\.ipv4\.vs\.sync' > "$OUT/sysctl.txt"
for f in daemon.txt services.txt lnc-v1.txt lnc-v0.txt sysctl.txt; do echo "== $f"; cat "$OUT/$f"; done
echo "== datagrams-v1.hex"; cat "$OUT/datagrams-v1.hex"
echo "== datagrams-v0.hex"; cat "$OUT/datagrams-v0.hex"
