#!/usr/bin/env bash
# make release: every release file of this checkout into dist/ (emptied first):
#   tunnel_VERSION_linux_{amd64,arm64,armv7,armv6}.tar.gz
#   tunnel_VERSION_darwin_{amd64,arm64}.tar.gz
#   tunnel_VERSION_windows_amd64.zip
#   tunnel_DEBVERSION_{amd64,arm64,armhf}.deb
#   SHA256SUMS (of all of the above, for sha256sum -c)
# Each archive holds one folder: the binary, README.md, LICENSE and examples/.
# Binaries are static (CGO_ENABLED=0), -trimpath, built with make build's
# tags (nethttpomithttp2), and stamped as make build
# stamps them (VERSION, COMMIT from the Makefile). The .debs are built by nfpm
# (.ci/package/nfpm.yaml), installed at the pinned NFPM_VERSION into
# bin/tools/ on first use; archives by tar, gzip and zip. File times are the
# commit's (SOURCE_DATE_EPOCH), so the same commit gives the same archives.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
DIST=${DIST:-dist}
NFPM_VERSION=${NFPM_VERSION:-v2.45.2}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || true)}
# A file name, whatever a tag holds.
VERSION=${VERSION//\//-}

need_zip() {
	command -v zip >/dev/null 2>&1 && return 0
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "release: installing zip with apt-get" >&2
		apt-get update </dev/null >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends zip </dev/null >/dev/null
		return 0
	fi
	echo "release: zip is missing (for the Windows archive); install it: sudo apt-get install zip" >&2
	exit 1
}

# nfpm at a pinned version, built from the Go module proxy: not a dependency
# of the project (go.mod), and one folder per version so that a new pin
# installs anew.
NFPM=bin/tools/nfpm-$NFPM_VERSION/nfpm
need_nfpm() {
	[ -x "$NFPM" ] && return 0
	echo "release: installing nfpm $NFPM_VERSION (go install, into $(dirname "$NFPM"))" >&2
	GOBIN=$PWD/$(dirname "$NFPM") CGO_ENABLED=0 $GO install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION" </dev/null
}

# The Debian version: a tag vX.Y.Z[-N-gHASH][-dirty] gives X.Y.Z[+N.gHASH][.dirty];
# a checkout with no tag gives 0.0.0~git<commit time>.<hash>, which sorts
# below any tagged release and in commit order among untagged ones.
deb_version() {
	local v=$1
	if [[ $v =~ ^v?([0-9].*)$ ]]; then
		v=${BASH_REMATCH[1]}
		if [[ $v == *-* ]]; then
			local rest=${v#*-}
			v=${v%%-*}+${rest//-/.}
		fi
	else
		v=0.0.0~git$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S 2>/dev/null || echo 0).${v//-/.}
	fi
	printf '%s\n' "$v"
}

need_zip
need_nfpm
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
DEB_VERSION=$(deb_version "$VERSION")
rm -rf "$DIST"
mkdir -p "$DIST"
distabs=$(cd "$DIST" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# os/arch/GOARM name: the name is the archive's (and a .deb's build).
targets=(linux/amd64//amd64 linux/arm64//arm64 linux/arm/7/armv7 linux/arm/6/armv6
	darwin/amd64//amd64 darwin/arm64//arm64 windows/amd64//amd64)
start=$(date +%s)
for t in "${targets[@]}"; do
	IFS=/ read -r os arch arm name <<<"$t"
	dir=tunnel_${VERSION}_${os}_${name}
	exe=tunnel
	[ "$os" = windows ] && exe=tunnel.exe
	mkdir -p "$work/$dir"
	t0=$(date +%s)
	GOOS=$os GOARCH=$arch GOARM=$arm CGO_ENABLED=0 $GO build -trimpath -tags nethttpomithttp2 \
		-ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" \
		-o "$work/$dir/$exe" ./cmd/tunnel </dev/null
	cp README.md LICENSE "$work/$dir/"
	cp -R examples "$work/$dir/"
	find "$work/$dir" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	if [ "$os" = windows ]; then
		(cd "$work" && zip -q -X -r "$distabs/$dir.zip" "$dir")
	else
		tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner \
			--mtime="@$SOURCE_DATE_EPOCH" -cf - "$dir" | gzip -n -9 >"$DIST/$dir.tar.gz"
	fi
	echo "release: $os/$arch${arm:+ GOARM=$arm} $(($(date +%s) - t0))s"
done

# Debian's armhf is ARMv7, but Raspberry Pi OS's 32-bit armhf also runs on
# the ARMv6 Pi Zero and Pi 1: its .deb carries the ARMv6 build, which runs
# on both.
for d in amd64/amd64 arm64/arm64 armhf/armv6; do
	deb_arch=${d%/*} name=${d#*/}
	BIN=$work/tunnel_${VERSION}_linux_${name}/tunnel DEB_ARCH=$deb_arch DEB_VERSION=$DEB_VERSION \
		"$NFPM" package --config .ci/package/nfpm.yaml --packager deb \
		--target "$DIST/tunnel_${DEB_VERSION}_${deb_arch}.deb" </dev/null >/dev/null
	echo "release: tunnel_${DEB_VERSION}_${deb_arch}.deb"
done

(cd "$DIST" && sha256sum -- *.tar.gz *.zip *.deb >SHA256SUMS)
echo "release: $VERSION ($COMMIT) in $DIST/, $(($(date +%s) - start))s:"
ls -l "$DIST"
