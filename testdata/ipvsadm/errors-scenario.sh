#!/bin/bash
# ---- scenario 6: ipvsadm error messages and exit codes (director netns) ----
set -u
for m in ip_vs ip_vs_rr ip_vs_wrr ip_vs_wlc ip_vs_sh ip_vs_mh; do modprobe $m; done
echo "== kernel $(uname -r): $(head -1 /proc/net/ip_vs)"
ip netns add director; ip netns exec director ip link set lo up
ip netns exec director ip addr add 198.18.0.1/32 dev lo
t() {
  printf '%s\n' "== CMD: ipvsadm $*"
  ip netns exec director ipvsadm "$@" >/tmp/o 2>/tmp/e; echo "rc=$?"
  echo "-- stdout"; cat /tmp/o; echo "-- stderr"; cat /tmp/e
}
t -A -t 198.18.0.1:80 -s rr
t -A -t 198.18.0.1:80 -s rr
t -A -t 198.18.0.1:82 -s foo
t -a -t 198.18.0.99:80 -r 198.18.2.2:80 -m
t -a -t 198.18.0.1:80 -r 198.18.2.2:80 -m
t -a -t 198.18.0.1:80 -r 198.18.2.2:80 -m
t -e -t 198.18.0.1:80 -r 198.18.2.3:80 -m -w 2
t -d -t 198.18.0.99:80 -r 198.18.2.2:80
t -D -t 198.18.0.99:80
t -E -t 198.18.0.99:80 -s rr
t -e -t 198.18.0.99:80 -r 198.18.2.2:80 -m
t -d -t 198.18.0.1:80 -r 198.18.2.9:80
t -a -t 198.18.0.1:80 -r 198.18.2.4:80 -m -w -1
t -a -t 198.18.0.1:80 -r 198.18.2.4:80 -m -w 65536
t -a -t 198.18.0.1:80 -r 198.18.2.4:80 -m -w 65535
t -a -t 198.18.0.1:80 -r 198.18.2.5:80 -m -x 10 -y 20
t -a -t 198.18.0.1:80 -r 198.18.2.6:80 -m -x -1
t -a -t 198.18.0.1:80 -m
t -A -t 198.18.0.1:0 -s rr
t -A -t 198.18.0.1:0 -s rr -p 60
t -A -u 198.18.0.1:53 -o
t -A -t 198.18.0.1:80 -o
t -A -t 198.18.0.1:81 -o
t -L -t 198.18.0.99:80
t -Ln -t 198.18.0.99:80
t -L -n -t 198.18.0.1:80
t -n -L
t --foo
t -A -t 198.18.0.1
t -A -t 80
t -A -t 198.18.0.1:83
t -A -t 198.18.0.1:84 -s rr -b sh-port
t -A -t 198.18.0.1:85 -s twos
t -A -f 0 -s rr
t -A -t 198.18.0.1:86 -s rr -p 0
t -A -t 198.18.0.1:87 -s rr -M 255.255.255.0
t -Ln
t -S -n
t -C
t -Ln
t
t --version
