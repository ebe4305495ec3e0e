//go:build linux

package main

// A busy neighbour: what one device's bulk download through a socksd does
// to another device's interactive traffic through the same socksd. A
// second device (`tunnel publish` of the echo server only) is started;
// through each of the direct and relayed socksds the bench holds one
// connection to its echo and sends one byte at a time, waiting for each to
// come back and then neighbourGap, first alone and then while the main
// device's source sends as fast as it can through the same socksd. A
// socksd (and a gateway) serves many devices at once; the round trips say
// whether one busy peer delays the rest, in the socksd's shared reader
// above all (transport/rxcredit.go).

import (
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"time"
)

const (
	neighbourAlone  = 300
	neighbourGap    = 2 * time.Millisecond
	neighbourWarmup = 500 * time.Millisecond // of the download, before the samples
)

type neighbourResult struct {
	name        string          // the column: the socksd's path
	alone, busy []time.Duration // round trips
	gbps        float64         // the download meanwhile
	procs       string          // the socksd's cores at the end of the download
	pathBad     string          // the second device's path, when not the column's
	err         error
}

// neighbour measures each socksd's round trips to a second device, alone
// and beside the main device's download.
func (b *bench) neighbour() ([]neighbourResult, error) {
	home := filepath.Join(b.work, "device-neighbour")
	id, err := b.tunnelID(home)
	if err != nil {
		return nil, err
	}
	dev, err := daemon("publish-neighbour", b.work, b.bin, "--home", home, "publish", "--relay", b.relayAddr,
		"-public", fmt.Sprintf("127.0.0.1:%d:%d", port(b.srv.echo), echoRemote))
	if err != nil {
		return nil, err
	}
	b.extra = append(b.extra, dev)
	var out []neighbourResult
	for _, t := range []*target{b.direct, b.relayed} {
		r := b.neighbourOf(t, id+".tunnel", id)
		if r.err != nil {
			progress("%-15s neighbour: %v", t.name, r.err)
		} else {
			progress("%-15s round trip to a second device: alone median %s p90 %s; beside a download of %.2f Gbit/s median %s p90 %s (%d samples; socksd cores %s)",
				t.name, fmtDur(quantileDur(r.alone, 0.5)), fmtDur(quantileDur(r.alone, 0.9)), r.gbps,
				fmtDur(quantileDur(r.busy, 0.5)), fmtDur(quantileDur(r.busy, 0.9)), len(r.busy), r.procs)
		}
		out = append(out, r)
	}
	return out, nil
}

func (b *bench) neighbourOf(t *target, host, id string) neighbourResult {
	r := neighbourResult{name: t.name}
	var c io.ReadWriteCloser
	deadline := time.Now().Add(30 * time.Second)
	for { // the device may still be registering
		conn, err := socksDial(t.proxy, host, echoRemote, 5*time.Second)
		if err == nil {
			c = conn
			break
		}
		if time.Now().After(deadline) {
			r.err = fmt.Errorf("reach the second device: %w", err)
			return r
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer c.Close()
	// Warm up: a direct path is punched after the first packets.
	if _, r.err = roundTrips(c, 50, time.Now().Add(time.Minute)); r.err != nil {
		return r
	}
	time.Sleep(time.Second)
	if r.alone, r.err = roundTrips(c, neighbourAlone, time.Now().Add(time.Minute)); r.err != nil {
		return r
	}

	b.srv.setLimits(1<<40, neighbourWarmup+cfg.bulkCap)
	dl, err := socksDial(t.proxy, t.host, t.source, 10*time.Second)
	if err != nil {
		r.err = fmt.Errorf("download from the first device: %w", err)
		return r
	}
	var got atomic.Int64
	var from atomic.Int64 // unix ns the counted part began
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 256<<10)
		for {
			n, err := dl.Read(buf)
			if from.Load() != 0 {
				got.Add(int64(n))
			}
			if err != nil {
				return
			}
		}
	}()
	time.Sleep(neighbourWarmup)
	first := procsOf(roleStatus(t.home, "socksd"))
	start := time.Now()
	from.Store(start.UnixNano())
	r.busy, r.err = roundTrips(c, 1<<30, start.Add(cfg.bulkCap-time.Second))
	elapsed := time.Since(start)
	r.gbps = float64(got.Load()) * 8 / elapsed.Seconds() / 1e9
	d, err := roleStatus(t.home, "socksd")
	r.procs = first + " → " + procsOf(d, err)
	if err == nil {
		if p, ok := peerOf(d, id); !ok || p.Path != t.wantPath {
			r.pathBad = p.Path
			if !ok {
				r.pathBad = "none"
			}
		}
	}
	dl.Close()
	<-done
	return r
}

// roundTrips sends one byte at a time on c and waits for it to come back,
// neighbourGap apart, n times or until the deadline.
func roundTrips(c io.ReadWriter, n int, deadline time.Time) ([]time.Duration, error) {
	var rtts []time.Duration
	b := []byte{'x'}
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		t0 := time.Now()
		if _, err := c.Write(b); err != nil {
			return rtts, fmt.Errorf("round trip %d: %w", i, err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return rtts, fmt.Errorf("round trip %d: %w", i, err)
		}
		rtts = append(rtts, time.Since(t0))
		time.Sleep(neighbourGap)
	}
	return rtts, nil
}

// neighbourCell is a column's cell of the round-trip row: median and p90,
// alone → beside the download.
func (r neighbourResult) cell() string {
	if r.err != nil {
		return "failed: " + r.err.Error()
	}
	s := fmt.Sprintf("%.2f (%.2f) → %.2f (%.2f)", ms(quantileDur(r.alone, 0.5)), ms(quantileDur(r.alone, 0.9)),
		ms(quantileDur(r.busy, 0.5)), ms(quantileDur(r.busy, 0.9)))
	if r.pathBad != "" {
		s += " (second device " + r.pathBad + ")"
	}
	return s
}

// downloadCell is a column's cell of the download row.
func (r neighbourResult) downloadCell() string {
	if r.err != nil {
		return dash
	}
	return fmt.Sprintf("%.2f; socksd cores %s", r.gbps, r.procs)
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

const (
	neighbourRow   = "round trip to a second device, 1 byte on an open connection, median (p90) ms: alone → beside the first device's download"
	neighbourDLRow = "… that download, Gbit/s; the socksd's cores (`--procs auto`) as the samples began → at their end"
)
