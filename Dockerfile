# The rendezvous node (tunnel relay) and the public gateway (tunnel gateway)
# as a container image: the static binary, an /etc/passwd naming its
# unprivileged user, the home that holds the node key, and the CA bundle (for
# a rediss:// registry with a public certificate); nothing else, no shell.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg COMMIT=$(git rev-parse HEAD) -t tunnel .
#   docker run -d --name tunnel-relay -p 7443:7443/udp -v tunnel-relay:/var/lib/tunnel tunnel
#   docker run -d --name tunnel-gateway -p 80:8080 -p 1080:1080 -v tunnel-gateway:/var/lib/tunnel \
#     tunnel gateway --relay ID@HOST:7443 --domain gw.example --http :8080 --socks :1080
#
# Keep the volume: it holds node.key, hence the node's ID.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Built with make build's tags, and stamped as make build stamps a checkout
# (tunnel version); the build context has no .git, so they come as arguments.
ARG VERSION=dev
ARG COMMIT=
RUN CGO_ENABLED=0 go build -trimpath -tags nethttpomithttp2 \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/tunnel ./cmd/tunnel \
 && mkdir -p /out/etc /out/home \
 && echo 'tunnel:x:65532:65532:tunnel:/var/lib/tunnel:/nonexistent' >/out/etc/passwd \
 && echo 'tunnel:x:65532:' >/out/etc/group

FROM scratch
COPY --from=build /out/etc/passwd /out/etc/group /etc/
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build --chown=65532:65532 --chmod=0700 /out/home /var/lib/tunnel
COPY --from=build /out/tunnel /usr/bin/tunnel
USER 65532:65532
ENV TUNNEL_HOME=/var/lib/tunnel
VOLUME ["/var/lib/tunnel"]
EXPOSE 7443/udp
ENTRYPOINT ["/usr/bin/tunnel"]
CMD ["relay", "--listen", "0.0.0.0:7443"]
