#!/bin/bash
# ipvsadm's parser, exactly: options given twice or in conflict, negative numbers, IPv6
# addresses without a port, the order of the kernel's checks, -6 with -f in every command, and
# the wording and quoting of its messages. Each command runs in order (state accumulates) in a
# director namespace; rc, stdout and stderr are printed. Run:
#   ../shared/tools/ipvs-vm/run-ipvs-vm -k trixie testdata/ipvsadm/parser-scenario.sh > testdata/ipvsadm/parser-output.txt
#   ../shared/tools/ipvs-vm/run-ipvs-vm -k bookworm testdata/ipvsadm/parser-scenario.sh > testdata/ipvsadm/parser-output-6.1.txt
# (6.1 and 6.12 print the same, line for line, but for the kernel's name.)
set -u
for m in ip_vs ip_vs_rr ip_vs_wrr ip_vs_wlc ip_vs_sh; do modprobe $m; done
echo "== kernel $(uname -r): $(head -1 /proc/net/ip_vs)"
ip netns add director; ip netns exec director ip link set lo up
t() {
  printf '%s\n' "== CMD: ipvsadm $*"
  ip netns exec director ipvsadm "$@" >/tmp/o 2>/tmp/e; echo "rc=$?"
  echo "-- stdout"; cat /tmp/o; echo "-- stderr"; cat /tmp/e
}
t -A -t 198.18.0.1:80 -s rr
# options twice or in conflict
t -A -t 198.18.0.1:81 -s rr -s wrr
t -A -t 198.18.0.1:82 -u 198.18.0.1:82
t -A -t 198.18.0.1:83 -f 1
t -A -E -t 198.18.0.1:84
t -a -t 198.18.0.1:80 -r 198.18.2.2 -g -m
t -a -t 198.18.0.1:80 -r 198.18.2.2 -w 1 -w 2
t -a -t 198.18.0.1:80 -r 198.18.2.3 -r 198.18.2.4
t -A -t 198.18.0.1:85 -p 10 -p 20
t -L -L
t -L -c -c
t -Ln --stats --rate
# negative numbers
t -A -t 198.18.0.1:86 -p -1
t -a -t 198.18.0.1:80 -r 198.18.2.5 -x -5
t -a -t 198.18.0.1:80 -r 198.18.2.5 -y -1
t --set -1 0 0
t --set 10 -20 30
t -A -t 198.18.0.1:87 -s rr -p 10 -M -1
# IPv6 without a port, with and without brackets
t -A -t [2001:2::1] -s rr
t -A -t 2001:2::1 -s rr
t -A -t [2001:2::1]:80 -s rr
t -a -t [2001:2::1]:80 -r 2001:2::2 -m
t -a -t [2001:2::1]:80 -r [2001:2::3] -m
t -a -t [2001:2::1]:80 -r [2001:2::4]:8080 -m
t -a -t [2001:2::1]:80 -r 2001:2::5:8080 -m
t -A -t [2001:2::1]:0 -s rr -p 30
# the order of the checks
t -A -t 198.18.0.1:80 -s nosuch
t -E -t 198.18.0.1:80 -s nosuch
t -E -t 198.18.0.99:80 -s nosuch
t -a -t 198.18.0.99:80 -r 198.18.2.2 -w -1
t -e -t 198.18.0.99:80 -r 198.18.2.2 -x 5 -y 10
# -6 with -f in every command
t -A -f 1 -6 -s rr
t -A -6 -f 2
t -A -f 3
t -a -f 1 -6 -r [2001:2::2] -g
t -a -f 1 -6 -r 2001:2::3 -g
t -a -f 1 -6 -r 198.18.2.2 -g
t -a -f 1 -6 -r 198.18.2.2 -i
t -a -f 3 -r 198.18.2.2 -g
t -e -f 1 -6 -r [2001:2::2] -g -w 3
t -E -f 1 -6 -s wrr
t -Ln -f 1 -6
t -Ln -f 1
t -Z -f 1 -6
t -d -f 1 -6 -r 2001:2::2
t -D -f 1
t -D -f 1 -6
t -A -6 -t 198.18.0.1:88
t -A -t 198.18.0.1:89 -6
# wording and quoting of messages
t -A -t 198.18.0.1:90 -s
t -A -t
t --foo=bar
t -A -t 198.18.0.1:91 --scheduler
t -a -t 198.18.0.1:80 -r
t -A -t 198.18.0.1:http
t -A -t 198.18.0.1:99999
t -a -t 198.18.0.1:80 -r 198.18.2.6:http -m
t -A -t 198.18.0.1:92 -s rr -b foo
t -A -t 198.18.0.1:93 -s rr --pe sip
t -A -u 198.18.0.1:94 -s rr --pe sip -p 10
t -A -t 198.18.0.1:95 -s rr extra
t -Ln
t -S -n
