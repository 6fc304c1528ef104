#!/usr/bin/env bash
# Builds the Debian package of xvs, as root or not: target/deb/xvs_<version>_<arch>.deb with
#   /usr/sbin/{xvsd,xvsadm,xvs-decap}, /lib/systemd/system/xvsd.service, /etc/default/xvsd and
#   /etc/xvs/xvs.toml (conffiles), man pages and bash/zsh/fish completions generated from the
#   binaries' own command lines (crates/xvs-package), the Grafana dashboard and the docs.
# Install: apt install ./target/deb/xvs_*.deb; set the interfaces in /etc/default/xvsd; then
# systemctl enable --now xvsd. The package path is printed on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p xvsd -p xvsadm -p xvs-package
version=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "xvsd"))')
arch=$(dpkg --print-architecture)
out=target/deb
stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"

install -d "$stage/usr/sbin" "$stage/lib/systemd/system" "$stage/etc/default" "$stage/etc/xvs" \
  "$stage/usr/share/doc/xvs" "$stage/usr/share/man/man8" "$stage/usr/share/xvs/grafana" \
  "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
  "$stage/usr/share/fish/vendor_completions.d"
for b in xvsd xvsadm xvs-decap; do
  install -m 0755 "target/release/$b" "$stage/usr/sbin/$b"
  strip --strip-debug "$stage/usr/sbin/$b"
done
# The unit as scripts/install.sh installs it, pointing at the package's binary.
sed 's|/usr/local/sbin/xvsd|/usr/sbin/xvsd|; s|(installed by scripts/install.sh)|(installed by the xvs package)|' \
  packaging/xvsd.service >"$stage/lib/systemd/system/xvsd.service"
install -m 0644 packaging/xvsd.default "$stage/etc/default/xvsd"
install -m 0644 packaging/xvs.toml "$stage/etc/xvs/xvs.toml"
install -m 0644 packaging/grafana/xvs-dashboard.json "$stage/usr/share/xvs/grafana/"
install -m 0644 packaging/deb/copyright "$stage/usr/share/doc/xvs/copyright"
install -m 0644 README.md docs/*.md "$stage/usr/share/doc/xvs/"

gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
target/release/xvs-package "$gen"
for page in "$gen"/man/*.8; do
  gzip -9n <"$page" >"$stage/usr/share/man/man8/$(basename "$page").gz"
done
install -m 0644 "$gen"/completions/bash/* "$stage/usr/share/bash-completion/completions/"
install -m 0644 "$gen"/completions/zsh/* "$stage/usr/share/zsh/vendor-completions/"
install -m 0644 "$gen"/completions/fish/* "$stage/usr/share/fish/vendor_completions.d/"

install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$stage/DEBIAN/"
printf '/etc/default/xvsd\n/etc/xvs/xvs.toml\n' >"$stage/DEBIAN/conffiles"
# The shared libraries the binaries need, as dpkg-shlibdeps finds them.
mkdir -p "$gen/debian"
printf 'Source: xvs\n\nPackage: xvs\nArchitecture: any\n' >"$gen/debian/control"
depends=$(cd "$gen" && dpkg-shlibdeps -O -e"$OLDPWD/$stage/usr/sbin/xvsd" -e"$OLDPWD/$stage/usr/sbin/xvsadm" \
  -e"$OLDPWD/$stage/usr/sbin/xvs-decap" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: xvs
Version: $version
Architecture: $arch
Maintainer: xvs developers <xvs@example.invalid>
Installed-Size: $size
Depends: ${depends:-libc6}, iproute2
Suggests: keepalived, bird2
Section: net
Priority: optional
Description: layer-4 load balancer on XDP with the semantics of IPVS
 xvs balances TCP, UDP and SCTP services over real servers with the fourteen
 schedulers of the kernel's IP Virtual Server, persistence, NAT, direct routing
 and tunnels, in an XDP program. xvsd owns the dataplane (restarts and upgrades
 do not stop forwarding), runs keepalived-style health checks, VRRP, connection
 sync and BGP announcements through BIRD; xvsadm takes ipvsadm's options and
 prints its formats; xvsadm top and a status page show it live.
CONTROL
deb="$out/xvs_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
