# tunnel: reach a TCP service (sshd first of all) on a device behind NAT
# as <device-id>.tunnel. See examples/walkthrough.md.
#
#   make build   bin/tunnel
#   make run     build, print the next steps, run socksd (+ embedded rendezvous node)
#   make test    deps + lint + unit tests (-race) + every fuzz target for 3 s, two at a time
#                + end-to-end suite (test/e2e)
#   make fuzz    every fuzz target for FUZZTIME (default 30s), one at a time
#                (.ci/fuzz.sh); a failing input lands in the package's
#                testdata/fuzz/
#   make lint    gofmt + go vet (for Linux, macOS and Windows)
#   make bench   Go benchmarks of all packages, then test/bench (root): tunnel vs
#                ssh -D vs raw TCP on loopback, one table (see BENCHMARKS.md);
#                `go run ./test/bench -against REV` compares the working tree
#                with a commit (or a binary), the two side by side
#   make deps    check (as root: install) sshd, ssh, OpenBSD nc, curl for the e2e suite
#   make soak    (root, not in CI) SOAK=10m of ssh sessions and checksummed transfers over
#                direct, relayed and redirected paths while relays die, NATs forget, 1 %
#                loss comes and goes and Redis restarts; prints failures and their faults,
#                bytes verified, and each process's RSS and fds (test/e2e/soak_test.go)
#   make release dist/: tar.gz archives for linux amd64/arm64/armv7/armv6 and darwin
#                amd64/arm64, a zip for windows amd64, .debs for linux amd64/arm64/armhf
#                (nfpm, installed into bin/tools/ on first use) and SHA256SUMS
#                (.ci/release.sh)
#   make release-check  (root; what CI runs after make test) make release, then check
#                dist/, install the amd64 .deb, run it, verify its units, purge it
#                (.ci/release-check.sh)
#   make clean   remove build, test and release outputs

SHELL       := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO          ?= go
BIN         := bin/tunnel
# For `make run`: where socksd's embedded rendezvous node listens. Loopback
# by default; use RELAY_LISTEN=0.0.0.0:7443 to let other machines publish.
RELAY_LISTEN ?=
E2E_TIMEOUT ?= 14m
# For `make bench`: extra flags of test/bench, e.g. BENCH_FLAGS='-rounds 5'.
BENCH_FLAGS ?=
# For `make soak`: how long the workload runs (a Go duration); the test's
# timeout is that plus 10 minutes of setup and wind-down.
SOAK ?= 10m
# For `make fuzz`: how long each fuzz target runs (anything -fuzztime takes).
FUZZTIME ?= 30s

# Every build from a checkout says what it is (tunnel version): the
# nearest tag and the commit, "-dirty" with uncommitted changes.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# nethttpomithttp2 leaves out net/http's bundled HTTP/2: tunnel never
# speaks it (the gateway serves and proxies HTTP/1.1 only, /metrics and
# the UPnP client are plain HTTP), and 0.5 MiB less mapped binary is
# 0.2-0.3 MiB less RSS in an idle agent and socksd (BENCHMARKS.md,
# Footprint).
# .ci/release.sh, the Dockerfile, test/e2e and test/bench (without -bin)
# build with the same tags.
TAGS := nethttpomithttp2

# All packages except the end-to-end suite (which has its own target).
UNIT_PKGS = $(GO) list ./... | grep -v '/test/e2e'

.PHONY: all build run test unit fuzz e2e lint bench soak deps release release-check clean

all: build

# A static binary (no cgo): it maps no C library, which is 2 MiB less
# resident memory per process (BENCHMARKS.md, Footprint), runs on any libc,
# and is what cross-compiling for a small board builds anyway. The tests
# (-race) still use cgo.
build:
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/tunnel

# For `make run`'s next steps: a separate home for a device tried on this
# same machine (one home is one key: the device must not share socksd's).
DEVICE_HOME ?= $(HOME)/.config/tunnel-device
TUNNEL_ABS   = $(abspath $(BIN))

run: build
	@echo "Starting: $(TUNNEL_ABS) socksd"
	@echo "  SOCKS5 proxy for <device-id>.tunnel names on 127.0.0.1:1080"
	@echo "  with its embedded rendezvous node on $(or $(RELAY_LISTEN),127.0.0.1:7443) (UDP)"
	@echo
	@echo "Next steps (in another terminal; paste as printed):"
	@echo "  1. Try a device on this same machine, with a home of its own, publishing"
	@echo "     this machine's sshd (port 22):"
	@echo "       $(TUNNEL_ABS) --home $(DEVICE_HOME) publish -public 22"
	@echo "     On another machine: tunnel publish --relay <this-host>:7443 -public 22"
	@echo "     (this node listens on loopback only; for that: make run RELAY_LISTEN=0.0.0.0:7443"
	@echo "     and open UDP 7443)."
	@echo "  2. Once, set up ssh for *.tunnel (ProxyCommand and host keys vouched for by"
	@echo "     the device, in ~/.ssh/tunnel.conf; 'ssh-config' alone only prints it):"
	@echo "       $(TUNNEL_ABS) ssh-config --install"
	@echo "  3. ssh to the device, by its ID or a name of your own:"
	@echo '       ssh $$USER@$$($(TUNNEL_ABS) --home $(DEVICE_HOME) id).tunnel'
	@echo '       $(TUNNEL_ABS) name add mypi $$($(TUNNEL_ABS) --home $(DEVICE_HOME) id) && ssh $$USER@mypi.tunnel'
	@echo '     Without step 2: ssh -o "ProxyCommand=nc -X 5 -x localhost:1080 %h %p" $$USER@<device-id>.tunnel'
	@echo
	exec $(BIN) socksd $(if $(RELAY_LISTEN),--relay-listen $(RELAY_LISTEN))

test: deps lint
	@echo "== unit tests (-race)"
	pkgs=$$($(UNIT_PKGS)); $(GO) test -race -count=1 $$pkgs
	@echo "== fuzz targets, 3s each"
	FUZZTIME=3s FUZZJOBS=2 GO=$(GO) bash .ci/fuzz.sh
	@echo "== end-to-end tests"
	$(GO) test -count=1 -v -timeout $(E2E_TIMEOUT) ./test/e2e/

unit:
	pkgs=$$($(UNIT_PKGS)); $(GO) test -race -count=1 $$pkgs

fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash .ci/fuzz.sh

e2e: deps
	$(GO) test -count=1 -v -timeout $(E2E_TIMEOUT) ./test/e2e/

# Vet type-checks every package (tests too) for macOS and Windows as well:
# nothing Linux-only may leak out of _linux.go files. It does not link;
# `make release` builds every platform's binary.
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

bench: deps build
	pkgs=$$($(UNIT_PKGS)); $(GO) test -run '^$$' -bench . -benchmem $$pkgs
	$(GO) run ./test/bench -bin $(BIN) $(BENCH_FLAGS)

soak: deps
	@timeout=$$(awk -v d='$(SOAK)' 'BEGIN { s = 0; if (d == "") exit 1; \
		while (match(d, /^[0-9]+(\.[0-9]+)?(h|ms|m|s)/)) { tok = substr(d, 1, RLENGTH); d = substr(d, RLENGTH + 1); \
			u = tok; sub(/^[0-9.]+/, "", u); s += (tok + 0) * (u == "h" ? 3600 : u == "m" ? 60 : u == "s" ? 1 : 0.001) } \
		if (d != "") exit 1; printf "%ds", s + 600 }') || { echo "soak: SOAK=$(SOAK) is not a duration like 10m or 1h30m" >&2; exit 2; }; \
	echo "== soak: SOAK=$(SOAK), go test -timeout $$timeout"; \
	SOAK=$(SOAK) $(GO) test -count=1 -v -run '^TestSoak$$' -timeout $$timeout ./test/e2e/

deps:
	@bash .ci/deps.sh

release:
	VERSION='$(VERSION)' COMMIT='$(COMMIT)' GO='$(GO)' bash .ci/release.sh

release-check: release
	VERSION='$(VERSION)' COMMIT='$(COMMIT)' bash .ci/release-check.sh

clean:
	rm -rf bin/ dist/ coverage.out coverage.html *.test *.prof
