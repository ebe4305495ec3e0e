package transport

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// BenchmarkRelayedStream measures one end-to-end stream crossing a relay on
// loopback: client node → relay → device node, all in this process. It
// reports throughput (MB/s, from SetBytes) and the relay's own packet count.
func BenchmarkRelayedStream(b *testing.B) { benchmarkStream(b, PathRelay) }

// BenchmarkDirectStream is the same over the direct path.
func BenchmarkDirectStream(b *testing.B) { benchmarkStream(b, PathAuto) }

func benchmarkStream(b *testing.B, mode PathMode) {
	tn := newTestNet(b)
	dev, cli := tn.node(b), tn.node(b)
	dev.SetMode(mode)
	cli.SetMode(mode)
	ln, err := dev.ListenPeers()
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sunk := make(chan int64, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		// Any client may stream here: authorized from the start, so that
		// the client can wait for the direct path before its stream.
		dev.Authorized(c)
		s, err := c.AcceptStream(ctx)
		if err != nil {
			return
		}
		n, _ := io.Copy(io.Discard, s)
		sunk <- n
	}()
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	conn, err := cli.DialPeer(dctx, dev.Key().ID(), dev.Endpoint())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	if mode == PathAuto {
		if err := cli.WaitDirect(dctx, dev.Endpoint()); err != nil {
			b.Fatal(err)
		}
	}
	s, err := conn.OpenStreamSync(dctx)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for range b.N {
		if _, err := s.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	if n := <-sunk; n != int64(b.N*len(buf)) {
		b.Fatalf("sink got %d bytes, want %d", n, b.N*len(buf))
	}
	b.StopTimer()
	b.ReportMetric(float64(tn.relay.Forwarded.Load())/float64(b.N), "relayed-pkts/op")
}

// BenchmarkSplicedStream is BenchmarkDirectStream with the TCP legs a
// SOCKS session has: a TCP client → Splice → stream (direct path) → Splice
// → a TCP sink, all on loopback in this process; so the splice, its buffers
// and the TCP reads and writes count too.
func BenchmarkSplicedStream(b *testing.B) {
	tn := newTestNet(b)
	dev, cli := tn.node(b), tn.node(b)
	ln, err := dev.ListenPeers()
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer front.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sunk := make(chan int64, 1)
	go func() {
		c, err := sink.Accept()
		if err != nil {
			sunk <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		sunk <- n
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() { // the device: stream → TCP sink
		defer wg.Done()
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		dev.Authorized(c)
		s, err := c.AcceptStream(ctx)
		if err != nil {
			return
		}
		t, err := net.Dial("tcp", sink.Addr().String())
		if err != nil {
			s.CancelRead(StreamAborted)
			return
		}
		_, _, _ = Splice(ctx, Conn(t), Stream(s))
	}()
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	conn, err := cli.DialPeer(dctx, dev.Key().ID(), dev.Endpoint())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	if err := cli.WaitDirect(dctx, dev.Endpoint()); err != nil {
		b.Fatal(err)
	}
	s, err := conn.OpenStreamSync(dctx)
	if err != nil {
		b.Fatal(err)
	}
	go func() { // the client side: front TCP → stream
		defer wg.Done()
		c, err := front.Accept()
		if err != nil {
			Stream(s).Abort()
			return
		}
		_, _, _ = Splice(ctx, Conn(c), Stream(s))
	}()
	tc, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer tc.Close()
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for range b.N {
		if _, err := tc.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	tc.(*net.TCPConn).CloseWrite()
	if n := <-sunk; n != int64(b.N*len(buf)) {
		b.Fatalf("sink got %d bytes, want %d", n, b.N*len(buf))
	}
	b.StopTimer()
}

// BenchmarkNodeReceive measures the node's receive path alone, one GRO
// run at a time: a run of 40 inner packets of 1,252 bytes, framed direct
// or relayed as they arrive, goes through Node.receive into the queue, and
// quic-go's side takes it out eight at a time (innerConn.ReadBatch). No
// socket and no crypto: what the frames, lookups, copies and queue cost.
func BenchmarkNodeReceive(b *testing.B) {
	const pkts, size = 40, 1252
	for _, tc := range []struct {
		name string
		hdr  []byte
	}{
		{"direct", []byte{frameDirect}},
		{"relayed", append([]byte{frameFromRelay}, binary.BigEndian.AppendUint64(nil, 7)...)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			nd := newTestNode(b, "127.0.0.1:0")
			from := netip.MustParseAddrPort("127.0.0.1:4000")
			if tc.hdr[0] == frameDirect {
				p := newPath(7, nd.addr(7))
				nd.pathMu.Lock()
				nd.paths[7] = p
				nd.byAddr[from] = p
				nd.pathMu.Unlock()
			} else {
				nd.SetRoutes(RelayRoute{Addr: from}, nil)
			}
			seg := len(tc.hdr) + size
			run := make([]byte, 0, pkts*seg)
			for range pkts {
				run = append(run, tc.hdr...)
				run = append(run, 0x40) // a QUIC short header's first byte
				run = append(run, make([]byte, size-1)...)
			}
			ms := make([]ipv4.Message, 8)
			for i := range ms {
				ms[i].Buffers = [][]byte{make([]byte, packetBufSize)}
			}
			b.SetBytes(pkts * size)
			b.ResetTimer()
			for range b.N {
				nd.receive(run, seg, from)
				for got := 0; got < pkts; {
					k, err := nd.innerPC.ReadBatch(ms, 0)
					if err != nil {
						b.Fatal(err)
					}
					got += k
				}
			}
		})
	}
}
