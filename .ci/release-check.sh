#!/usr/bin/env bash
# make release-check (CI runs it after make test), on what make release left
# in dist/:
#   - dist/ holds every archive, the three .debs and SHA256SUMS, nothing else,
#     and sha256sum -c accepts SHA256SUMS;
#   - every binary, in an archive or a .deb, is the target's (GOOS, GOARCH,
#     GOARM), static (CGO_ENABLED=0), -trimpath, stamped with this COMMIT;
#     the linux/amd64 one runs and prints it;
#   - as root with dpkg: installs the amd64 .deb (twice: a reinstall runs the
#     scripts again), runs /usr/bin/tunnel version, checks the tunnel system
#     user, the units (systemd-analyze verify when there) and that nothing
#     was enabled; then purges it and deletes the user if it made it, leaving
#     the machine as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
DIST=${DIST:-dist}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse HEAD)}
VERSION=${VERSION//\//-}
fail() {
	echo "release-check: FAIL: $*" >&2
	exit 1
}
[ -n "$COMMIT" ] || fail "no commit to check for (not a git checkout?)"
if ! command -v unzip >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "release-check: installing unzip with apt-get" >&2
		apt-get update </dev/null >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends unzip </dev/null >/dev/null
	else
		fail "unzip is missing (to check the Windows archive); install it: sudo apt-get install unzip"
	fi
fi
start=$(date +%s)

# dist/: exactly the expected files.
archives=()
for t in linux_amd64 linux_arm64 linux_armv7 linux_armv6 darwin_amd64 darwin_arm64; do
	archives+=("tunnel_${VERSION}_$t.tar.gz")
done
archives+=("tunnel_${VERSION}_windows_amd64.zip")
debs=()
for a in amd64 arm64 armhf; do
	f=$(cd "$DIST" && ls -- tunnel_*_"$a".deb 2>/dev/null) || fail "$DIST/ has no .deb for $a"
	[ "$(wc -l <<<"$f")" -eq 1 ] || fail "$DIST/ has several .debs for $a: $f"
	debs+=("$f")
done
for f in "${archives[@]}" "${debs[@]}" SHA256SUMS; do
	[ -s "$DIST/$f" ] || fail "$DIST/$f is missing or empty"
done
want=$(printf '%s\n' "${archives[@]}" "${debs[@]}" SHA256SUMS | sort)
have=$(cd "$DIST" && ls -A | sort)
[ "$want" = "$have" ] || fail "$DIST/ holds $(tr '\n' ' ' <<<"$have"), expected $(tr '\n' ' ' <<<"$want")"
summed=$(awk '{ print $2 }' "$DIST/SHA256SUMS" | sort)
[ "$summed" = "$(printf '%s\n' "${archives[@]}" "${debs[@]}" | sort)" ] || fail "SHA256SUMS does not list exactly the archives and .debs"
(cd "$DIST" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c SHA256SUMS"
echo "release-check: $DIST/ has the 7 archives, 3 .debs and SHA256SUMS; sha256sum -c: ok"

work=$(mktemp -d)
installed=
made_user=
cleanup() {
	if [ -n "$installed" ]; then
		dpkg --purge tunnel >/dev/null 2>&1 || true
	fi
	if [ -n "$made_user" ] && getent passwd tunnel >/dev/null; then
		userdel tunnel >/dev/null 2>&1 || true
	fi
	if [ -n "$made_user" ] && getent group tunnel >/dev/null; then
		groupdel tunnel >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# checkbin FILE GOOS GOARCH GOARM: what go version -m reads from the binary.
checkbin() {
	local bin=$1 os=$2 arch=$3 arm=$4 info
	info=$($GO version -m "$bin") || fail "$bin: go version -m cannot read it"
	grep -qx $'\tbuild\tGOOS='"$os" <<<"$info" || fail "$bin: not built for GOOS=$os"
	grep -qx $'\tbuild\tGOARCH='"$arch" <<<"$info" || fail "$bin: not built for GOARCH=$arch"
	if [ -n "$arm" ]; then
		grep -qx $'\tbuild\tGOARM='"$arm" <<<"$info" || fail "$bin: not built for GOARM=$arm"
	fi
	grep -qx $'\tbuild\tCGO_ENABLED=0' <<<"$info" || fail "$bin: not static (CGO_ENABLED=0)"
	grep -qx $'\tbuild\t-trimpath=true' <<<"$info" || fail "$bin: not built with -trimpath"
	# -trimpath keeps -ldflags out of the build info, so the stamps are
	# looked for where -X put them: as strings in the binary's data.
	grep -qaF "$COMMIT" "$bin" || fail "$bin: not stamped with main.commit=$COMMIT"
	grep -qaF "$VERSION" "$bin" || fail "$bin: not stamped with main.version=$VERSION"
}

for a in "${archives[@]}"; do
	base=${a%.tar.gz}
	base=${base%.zip}
	osarch=${base#"tunnel_${VERSION}_"}
	os=${osarch%_*} name=${osarch#*_} arm=
	case $name in
	armv7) arch=arm arm=7 ;;
	armv6) arch=arm arm=6 ;;
	*) arch=$name ;;
	esac
	exe=tunnel
	if [ "$os" = windows ]; then
		exe=tunnel.exe
		(cd "$work" && unzip -q "$OLDPWD/$DIST/$a") || fail "unzip $a"
	else
		tar -C "$work" -xzf "$DIST/$a" || fail "tar -xzf $a"
	fi
	for f in "$exe" README.md LICENSE examples/systemd/tunnel-publish.service examples/config/publish.yaml; do
		[ -f "$work/$base/$f" ] || fail "$a has no $base/$f"
	done
	checkbin "$work/$base/$exe" "$os" "$arch" "$arm"
done
out=$("$work/tunnel_${VERSION}_linux_amd64/tunnel" version) || fail "the linux/amd64 binary: tunnel version failed"
grep -qF "$COMMIT" <<<"$out" || fail "the linux/amd64 binary prints no commit $COMMIT: $out"
echo "release-check: every archive's binary is static, -trimpath, for its platform, stamped $VERSION $COMMIT"
echo "release-check: linux/amd64 tunnel version: $(tr '\n' ' ' <<<"$out")"

# The .debs' contents.
units=(/usr/lib/systemd/system/tunnel-publish.service /usr/lib/systemd/system/tunnel-relay.service
	/usr/lib/systemd/system/tunnel-gateway.service /usr/lib/systemd/user/tunnel-socksd.service)
for d in "${debs[@]}"; do
	a=${d%.deb}
	a=${a##*_}
	[ "$(dpkg-deb -f "$DIST/$d" Architecture)" = "$a" ] || fail "$d: Architecture is not $a"
	[ "$(dpkg-deb -f "$DIST/$d" Package)" = tunnel ] || fail "$d: Package is not tunnel"
	list=$(dpkg-deb -c "$DIST/$d" | awk '{ print $6 }' | sed 's|^\./|/|')
	for f in /usr/bin/tunnel "${units[@]}" /etc/tunnel/ /usr/share/doc/tunnel/copyright \
		/usr/share/doc/tunnel/examples/{publish,relay,gateway,socksd}.yaml; do
		grep -qxF "$f" <<<"$list" || fail "$d does not install $f"
	done
	if grep '^/etc/tunnel/.' <<<"$list"; then
		fail "$d puts files in /etc/tunnel/: a unit would start before the administrator configured it"
	fi
	rm -rf "$work/deb"
	dpkg-deb -x "$DIST/$d" "$work/deb"
	case $a in
	armhf) checkbin "$work/deb/usr/bin/tunnel" linux arm 6 ;;
	*) checkbin "$work/deb/usr/bin/tunnel" linux "$a" "" ;;
	esac
done
echo "release-check: the .debs hold the binary for their architecture, the four units, the examples, nothing in /etc/tunnel/"

if [ "$(id -u)" -ne 0 ] || ! command -v dpkg >/dev/null 2>&1; then
	if [ -n "${CI:-}" ]; then
		fail "installing the .deb needs root and dpkg"
	fi
	echo "release-check: not root (or no dpkg): skipped installing the .deb"
	exit 0
fi
if dpkg-query -W -f '${Status}' tunnel 2>/dev/null | grep -q 'installed'; then
	fail "a tunnel package is already installed here; release-check would replace it (dpkg --purge tunnel first)"
fi
getent passwd tunnel >/dev/null || made_user=1
if [ -z "$made_user" ]; then
	echo "release-check: a tunnel user exists already; it stays"
fi
wants_before=$(find /etc/systemd -name 'tunnel-*' 2>/dev/null | sort)

deb=$DIST/$(printf '%s\n' "${debs[@]}" | grep '_amd64\.deb$')
installed=1
dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb"
# A reinstall runs the maintainer scripts again: they must not fail on a
# user that exists.
dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb a second time"
out=$(/usr/bin/tunnel version) || fail "/usr/bin/tunnel version failed"
grep -qF "$COMMIT" <<<"$out" || fail "/usr/bin/tunnel version prints no commit $COMMIT: $out"
ent=$(getent passwd tunnel) || fail "the .deb made no tunnel user"
IFS=: read -r _ _ uid gid _ home shell <<<"$ent"
[ "$uid" -lt 1000 ] || fail "the tunnel user is not a system user (uid $uid)"
getent group tunnel >/dev/null || fail "the .deb made no tunnel group"
case $shell in */nologin | /bin/false) ;; *) fail "the tunnel user has a login shell: $shell" ;; esac
[ "$home" = /var/lib/tunnel ] || fail "the tunnel user's home is $home, not /var/lib/tunnel"
for u in "${units[@]}"; do
	[ -f "$u" ] || fail "$u not installed"
done
[ -d /etc/tunnel ] || fail "/etc/tunnel not installed"
[ -z "$(ls -A /etc/tunnel)" ] || fail "/etc/tunnel is not empty after install: $(ls -A /etc/tunnel)"
wants_after=$(find /etc/systemd -name 'tunnel-*' 2>/dev/null | sort)
[ "$wants_before" = "$wants_after" ] || fail "installing enabled something: $wants_after"
if [ -d /run/systemd/system ]; then
	for u in tunnel-publish tunnel-relay tunnel-gateway; do
		! systemctl is-active --quiet "$u" || fail "$u runs right after install"
	done
fi
if command -v systemd-analyze >/dev/null 2>&1; then
	# verify exits 0 on a line it ignores (a misspelt value): any output fails.
	out=$(systemd-analyze verify "${units[@]:0:3}" 2>&1) && [ -z "$out" ] ||
		fail "systemd-analyze verify of the system units: $out"
	# A user manager's verify needs a runtime folder (none under CI).
	rt=$(mktemp -d)
	out=$(XDG_RUNTIME_DIR=$rt systemd-analyze --user verify "${units[3]}" 2>&1) && [ -z "$out" ] ||
		fail "systemd-analyze --user verify of tunnel-socksd.service: $out"
	rm -rf "$rt"
	echo "release-check: systemd-analyze verify: the 3 system units and the user unit pass"
else
	echo "release-check: no systemd-analyze here: units not verified"
fi
echo "release-check: dpkg -i $deb (twice): /usr/bin/tunnel version prints $COMMIT; user $ent; nothing enabled"

dpkg --purge tunnel >/dev/null || fail "dpkg --purge tunnel"
installed=
for f in /usr/bin/tunnel "${units[@]}" /etc/tunnel /var/lib/tunnel /usr/share/doc/tunnel; do
	[ ! -e "$f" ] || fail "$f is left after dpkg --purge"
done
getent passwd tunnel >/dev/null || fail "dpkg --purge deleted the tunnel user (it should stay, as Debian packages' users do)"
echo "release-check: dpkg --purge removed the files and state and kept the tunnel user$([ -n "$made_user" ] && echo ', which this check now deletes')"
echo "release-check: ok, $(($(date +%s) - start))s"
