#!/bin/sh
# replay-to-kernel-backup.sh — does a real kernel sync BACKUP accept what xvs's master sends?
# Run in the IPVS VM with the datagrams xvs-sync's tests write (tests/kernel_backup.rs):
#   run-ipvs-vm -o testdata/sync/kernel-6.1-backup testdata/sync/replay-to-kernel-backup.sh \
#       testdata/sync/xvs-master/datagrams.hex
#   run-ipvs-vm -k trixie -o testdata/sync/kernel-6.12-backup ...   (the same, on 6.12)
#
# Topology: two netns on one veth link.
#   master 10.0.0.1 (eth0) ── backup 10.0.0.2 (eth0)
# "backup" has the IPVS services the connections refer to and runs
#   ipvsadm --start-daemon backup --mcast-interface eth0 --syncid 9
# "master" is no director: python3 sends each line of datagrams.hex, as one UDP datagram,
# to 224.0.0.81:8848 out of eth0 with TTL 1 (what the kernel's master or xvsd would send).
# Output ($OUT): lnc.txt (ipvsadm -Lnc), ip_vs_conn.txt (/proc/net/ip_vs_conn),
# services.txt (ipvsadm -Ln), daemon.txt (ipvsadm -L --daemon), dmesg.txt (IPVS lines of the
# kernel log), sent.txt (what the sender sent). The host keeps stdout as run.log.
set -e
OUT=${OUT:-/out}
mkdir -p "$OUT"
for m in ip_vs ip_vs_rr; do modprobe $m; done
echo "== kernel $(uname -r): $(head -1 /proc/net/ip_vs)"
DGRAMS=/scenario/datagrams.hex
test -s $DGRAMS || { echo "no $DGRAMS"; exit 1; }

ns() { ip netns exec "$@"; }
for n in master backup; do ip netns add $n; ns $n ip link set lo up; done
ip link add eth0 netns master type veth peer name eth0 netns backup
ns master ip addr add 10.0.0.1/24 dev eth0; ns master ip link set eth0 up
ns backup ip addr add 10.0.0.2/24 dev eth0; ns backup ip link set eth0 up

# The services of the connections in datagrams.hex (see tests/kernel_backup.rs `sent`), with
# the forwarding methods they were sent with.
B="ns backup ipvsadm"
$B -A -t 198.18.0.100:80 -s rr;       $B -a -t 198.18.0.100:80 -r 198.18.2.2:80 -m
$B -A -u 198.18.0.100:53 -s rr;       $B -a -u 198.18.0.100:53 -r 198.18.2.2:53 -m
$B -A -t 198.18.1.100:80 -s rr;       $B -a -t 198.18.1.100:80 -r 198.18.1.3:80 -g
$B -A -t 198.18.0.101:80 -s rr -p 60; $B -a -t 198.18.0.101:80 -r 198.18.2.2:80 -m
$B -A -t [2001:db8::100]:80 -s rr;    $B -a -t [2001:db8::100]:80 -r [2001:db8:2::2]:80 -m

dmesg -c > /dev/null || true
$B --start-daemon backup --mcast-interface eth0 --syncid 9
sleep 1   # the backup thread joins the group and waits in its receive loop
$B -L --daemon > "$OUT/daemon.txt"

cat > /tmp/send.py <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.0.0.1"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
s.bind(("10.0.0.1", 0))
for n, line in enumerate(open(sys.argv[1])):
    line = line.strip()
    if not line:
        continue
    d = bytes.fromhex(line)
    sent = s.sendto(d, ("224.0.0.81", 8848))
    print("datagram %d: %d bytes, syncid %d, %d entries, sent %d" % (n, len(d), d[1], d[4], sent), flush=True)
PY
ns master python3 /tmp/send.py $DGRAMS | tee "$OUT/sent.txt"
WANT=0   # entries sent: byte 4 of a version 1 header is its entry count
while read -r line; do [ -n "$line" ] && WANT=$((WANT + 0x$(echo "$line" | cut -c9-10))); done < $DGRAMS
echo "$WANT entries sent"
# The backup thread wakes on the socket; give it up to 5 s to install everything.
for _ in $(seq 25); do
  [ "$($B -Lnc | tail -n +3 | wc -l)" -ge $WANT ] && break
  sleep 0.2
done

$B -Lnc > "$OUT/lnc.txt"
ns backup cat /proc/net/ip_vs_conn > "$OUT/ip_vs_conn.txt"
$B -Ln > "$OUT/services.txt"
dmesg | grep -i 'ipvs\|ip_vs\|backup\|sync' > "$OUT/dmesg.txt" || true
for f in sent.txt daemon.txt services.txt lnc.txt ip_vs_conn.txt dmesg.txt; do echo "== $f"; cat "$OUT/$f"; done
