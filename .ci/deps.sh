#!/usr/bin/env bash
# Checks (and, as root, installs) what `make test` needs beyond Go:
# openssh-server (/usr/sbin/sshd), openssh-client (ssh, ssh-keygen),
# netcat-openbsd (nc with -X for SOCKS), curl, wget (an http_proxy client), iproute2/iptables/conntrack
# (NATs in network namespaces), chromium (headless, for the browser tests),
# redis-server (the multi-node tests), miniupnpd-nftables and nftables (a
# router granting port mappings, test/e2e/portmap_test.go), and a C
# compiler for -race.
# Debian/Ubuntu only.
set -euo pipefail

missing=()
have_openbsd_nc() {
	# GNU and traditional netcat lack -X (proxy protocol); OpenBSD's has it.
	command -v nc >/dev/null 2>&1 || return 1
	# (Captured first: nc -h exits non-zero, which pipefail would see.)
	local help
	help=$(nc -h 2>&1 || true)
	case $help in
	*"OpenBSD netcat"* | *"-X proxy_"*) return 0 ;;
	esac
	return 1
}

check() {
	missing=()
	[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
	{ command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; } || missing+=(openssh-client)
	have_openbsd_nc || missing+=(netcat-openbsd)
	command -v curl >/dev/null 2>&1 || missing+=(curl)
	command -v wget >/dev/null 2>&1 || missing+=(wget)
	# Network namespaces with NATs for the direct-path tests.
	command -v ip >/dev/null 2>&1 || missing+=(iproute2)
	# (ip6tables, for the IPv6 firewalls of test/e2e/ipv6_test.go, ships with iptables.)
	{ command -v iptables >/dev/null 2>&1 && command -v iptables-restore >/dev/null 2>&1 && command -v ip6tables >/dev/null 2>&1; } || missing+=(iptables)
	command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)
	# A home router that grants NAT-PMP/PCP mappings, and the nft its rules need.
	[ -x /usr/sbin/miniupnpd ] || missing+=(miniupnpd-nftables)
	command -v nft >/dev/null 2>&1 || missing+=(nftables)
	# Headless Chromium for the browser tests (test/e2e/browser_test.go).
	command -v chromium >/dev/null 2>&1 || missing+=(chromium)
	# Redis for the multi-node tests (test/e2e/multinode_test.go).
	{ command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; } || missing+=(redis-server)
	# `go test -race` needs cgo, hence a C compiler and libc headers.
	if ! command -v gcc >/dev/null 2>&1 && ! command -v cc >/dev/null 2>&1; then
		missing+=(gcc libc6-dev)
	fi
	# useradd/passwd (passwd package) are on every Debian base image.
}

pkgs=(openssh-server openssh-client netcat-openbsd curl wget iproute2 iptables conntrack miniupnpd-nftables nftables chromium redis-server)

check
for p in gcc libc6-dev; do
	case " ${missing[*]} " in *" $p "*) pkgs+=("$p") ;; esac
done
install_line="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${pkgs[*]}"
if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: ok (sshd, ssh, OpenBSD nc, curl, wget, ip, iptables, conntrack, miniupnpd, nft, chromium, redis-server, C compiler for -race)"
	exit 0
fi

echo "deps: missing: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: not root; install them with:" >&2
	echo "  sudo sh -c '$install_line'" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: no apt-get here; install the equivalents of: ${missing[*]}" >&2
	exit 1
fi

echo "deps: installing with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update </dev/null
apt-get install -y --no-install-recommends "${pkgs[@]}" </dev/null
# Debian's netcat-openbsd registers nc via alternatives; make sure it wins
# over netcat-traditional if both are installed.
if [ -x /bin/nc.openbsd ] && command -v update-alternatives >/dev/null 2>&1; then
	update-alternatives --set nc /bin/nc.openbsd >/dev/null 2>&1 || true
fi

check
if [ ${#missing[@]} -ne 0 ]; then
	echo "deps: still missing after install: ${missing[*]}" >&2
	exit 1
fi
echo "deps: ok (installed)"
