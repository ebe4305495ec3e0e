//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/tunnel-dev/tunnel/socks"
)

// socksDial connects to host:port through the SOCKS5 proxy at proxy, as
// nc -X 5 does (the product's own SOCKS client). An empty proxy dials
// host:port directly.
func socksDial(proxy, host string, port int, timeout time.Duration) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var c net.Conn
	var err error
	if proxy == "" {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", net.JoinHostPort(host, fmt.Sprint(port)))
	} else {
		c, err = socks.Dial(ctx, proxy, host, uint16(port))
	}
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}
