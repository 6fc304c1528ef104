#!/bin/bash
# ---- common setup (lib.sh) -------------------------------------------------
# client 198.18.1.2/24 (+ extra addrs)  --veth--  198.18.1.1 director (VIPs 198.18.0.x on lo)
# director 198.18.(1+K).1 --veth-- 198.18.(1+K).2 rsK  (K=1..3), rsK default route via director (NAT)
# each rsK runs busybox httpd on :80 serving the text "rsK".
set -u
for m in ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh ip_vs_mh ip_vs_dh; do modprobe $m; done
echo "== kernel $(uname -r): $(head -1 /proc/net/ip_vs)"
echo "== $(ipvsadm --version)"
ns() { ip netns exec "$@"; }
for n in client director rs1 rs2 rs3; do ip netns add $n; ns $n ip link set lo up; done
link() {  # link NS1 IF1 ADDR1 NS2 IF2 ADDR2
  ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
  ns "$1" ip addr add "$3/24" dev "$2"; ns "$1" ip link set "$2" up
  ns "$4" ip addr add "$6/24" dev "$5"; ns "$4" ip link set "$5" up
}
link client eth0 198.18.1.2 director c0 198.18.1.1
link rs1 eth0 198.18.2.2 director r1 198.18.2.1
link rs2 eth0 198.18.3.2 director r2 198.18.3.1
link rs3 eth0 198.18.4.2 director r3 198.18.4.1
ns client ip route add default via 198.18.1.1
for k in 1 2 3; do ns rs$k ip route add default via 198.18.$((k+1)).1; done
for v in 100 101 102 103 104 105; do ns director ip addr add 198.18.0.$v/32 dev lo; done
ns director sysctl -qw net.ipv4.ip_forward=1
ns director sysctl -qw net.ipv4.icmp_ratelimit=0   # refusals (ICMP port unreachable) not rate-limited
for a in $(seq 10 73); do ns client ip addr add 198.18.1.$a/24 dev eth0; done
for r in rs1 rs2 rs3; do
  mkdir -p /tmp/www-$r; echo $r > /tmp/www-$r/index.html
  ns $r httpd -p 80 -h /tmp/www-$r
done
RS1=198.18.2.2 RS2=198.18.3.2 RS3=198.18.4.2
# ipv ARGS...: run ipvsadm in the director netns, echoing the command and rc
ipv() { echo "+ ipvsadm $*"; ns director ipvsadm "$@"; local rc=$?; [ $rc = 0 ] || echo "  (rc=$rc)"; return 0; }
show() {  # kernel view after setup
  echo "== ipvsadm -Ln"; ns director ipvsadm -Ln
  echo "== /proc/net/ip_vs (kernel list order)"; ns director cat /proc/net/ip_vs
}
cat > /tmp/client.py <<'PY'
# usage: client.py VIP TIMEOUT SPEC...   SPEC = src_ip:src_port (port 0 = ephemeral)
import socket, sys
vip, tmo = sys.argv[1], float(sys.argv[2])
for i, spec in enumerate(sys.argv[3:], 1):
    ip, port = spec.split(":")
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(tmo); lp = "?"
    try:
        s.bind((ip, int(port))); lp = s.getsockname()[1]
        s.connect((vip, 80)); s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            b = s.recv(4096)
            if not b: break
            data += b
        res = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip() or "empty"
    except ConnectionRefusedError: res = "refused"
    except socket.timeout: res = "timeout"
    except OSError as e: res = "error:" + str(e)
    finally: s.close()
    print(f"conn {i} {ip}:{lp} -> {res}", flush=True)
PY
# conns VIP N [SRC]: N sequential connections from SRC (default 198.18.1.2), ephemeral ports
conns() { local v=$1 n=$2 src=${3:-198.18.1.2} a=(); for i in $(seq 1 $n); do a+=("$src:0"); done
  ns client python3 /tmp/client.py "$v" 2 "${a[@]}"; }
# ---- end of common setup ---------------------------------------------------
# ---- scenario 1: rr ----
V=198.18.0.100
echo "#### setup"
ipv -A -t $V:80 -s rr
ipv -a -t $V:80 -r $RS1:80 -m -w 1
ipv -a -t $V:80 -r $RS2:80 -m -w 1
ipv -a -t $V:80 -r $RS3:80 -m -w 1
show
echo "#### phase A: 7 connections"
conns $V 7
echo "#### phase B: delete rs2"
ipv -d -t $V:80 -r $RS2:80
show
conns $V 4
echo "#### phase C: re-add rs2"
ipv -a -t $V:80 -r $RS2:80 -m -w 1
show
conns $V 4
sleep 2.5
mkdir -p $OUT/formats
save() { local f=$1; shift; ns director ipvsadm "$@" > $OUT/formats/$f 2>&1; echo "rc=$?" > $OUT/formats/$f.rc; echo "== ipvsadm $* (-> formats/$f)"; cat $OUT/formats/$f; }
save Ln.txt -Ln
save Ln-stats.txt -Ln --stats
save Ln-rate.txt -Ln --rate
save Lnc.txt -Lnc
save S-n.txt -S -n
save Ln-thresholds.txt -Ln --thresholds
save Ln-persistent-conn.txt -Ln --persistent-conn
ns director cat /proc/net/ip_vs > $OUT/formats/proc-net-ip_vs.txt
ns director cat /proc/net/ip_vs_conn > $OUT/formats/proc-net-ip_vs_conn.txt
ns director cat /proc/net/ip_vs_stats > $OUT/formats/proc-net-ip_vs_stats.txt
echo "== /proc/net/ip_vs_conn"; cat $OUT/formats/proc-net-ip_vs_conn.txt
# extra: same formats with a persistent service, thresholds, a UDP and a fwmark service
echo "#### extra format services"
ipv -A -t 198.18.0.101:443 -s wlc -p 300 -M 255.255.255.0
ipv -a -t 198.18.0.101:443 -r $RS1:443 -m -w 2 -x 100 -y 50
ipv -a -t 198.18.0.101:443 -r $RS2:443 -m -w 1
ipv -A -u 198.18.0.101:53 -s sh -b sh-fallback,sh-port -o
ipv -a -u 198.18.0.101:53 -r $RS3:53 -m
ipv -A -f 7 -s rr -p
ipv -a -f 7 -r $RS1 -g
conns 198.18.0.100 1 198.18.1.10
mkdir -p $OUT/formats-extra
save2() { local f=$1; shift; ns director ipvsadm "$@" > $OUT/formats-extra/$f 2>&1; echo "rc=$?" > $OUT/formats-extra/$f.rc; echo "== ipvsadm $* (-> formats-extra/$f)"; cat $OUT/formats-extra/$f; }
save2 Ln.txt -Ln
save2 Ln-stats.txt -Ln --stats
save2 Ln-rate.txt -Ln --rate
save2 Lnc.txt -Lnc
save2 S-n.txt -S -n
save2 Ln-thresholds.txt -Ln --thresholds
save2 Ln-persistent-conn.txt -Ln --persistent-conn
save2 Ln-exact.txt -Ln --exact
save2 L-timeout.txt -L --timeout
save2 Ln-daemon.txt -L --daemon
ns director cat /proc/net/ip_vs > $OUT/formats-extra/proc-net-ip_vs.txt
