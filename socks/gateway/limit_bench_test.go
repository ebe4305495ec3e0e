package gateway

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// What Acquire and release cost with many sources:
//
//	go test -run '^$' -bench 'BenchmarkLimiter($|/|Clock|Parallel)' -benchtime 1000000x -benchmem ./socks/gateway/
//	go test -run '^$' -bench BenchmarkLimiterSweep -benchtime 300x ./socks/gateway/
//
// sources=N cycles over N distinct IPv4 sources, each Acquire released at
// once; busy adds 150 sources holding up to 60 streams each (the total
// near its cap: 9000 of 10000 first come, first served, less when shared
// fairly). Clock moves a test clock 1 ms per operation over 100k sources,
// so that state expires while it runs, and reports the slowest operation
// (max-ns), the 99.9th percentile and how many took over a millisecond
// (ops>1ms): wall-clock figures, only as good as the machine is quiet.
// Parallel runs on every CPU. Sweep has 100k sources holding a stream and
// a minute between operations, as often as a table swept every minute is.

func benchIPs(n int) []netip.Addr {
	ips := make([]netip.Addr, n)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return ips
}

func benchLimits() Limits {
	return Limits{ConnRate: 1e9, ConnBurst: 1 << 30, MaxStreams: 64, MaxTotal: 10000}
}

func BenchmarkLimiter(b *testing.B) {
	for _, n := range []int{1, 1000, 100000} {
		for _, busy := range []bool{false, true} {
			name := fmt.Sprintf("sources=%d", n)
			if busy {
				name += "/busy"
			}
			b.Run(name, func(b *testing.B) {
				l := NewLimiter(benchLimits())
				if busy {
					for _, ip := range benchIPs(150) {
						ip = netip.AddrFrom4([4]byte{192, 168, ip.As4()[2], ip.As4()[3]})
						for range 60 {
							if _, err := l.Acquire(ip); err != nil {
								break // near the cap, held to its share
							}
						}
					}
				}
				ips := benchIPs(n)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					release, err := l.Acquire(ips[i%n])
					if err != nil {
						b.Fatal(err)
					}
					release()
				}
			})
		}
	}
}

// BenchmarkLimiterClock moves a test clock 1 ms per operation over 100k
// sources, so that whatever expires state runs inside the benchmark, and
// reports the slowest Acquire+release, the 99.9th percentile and the
// number over a millisecond besides the mean.
func BenchmarkLimiterClock(b *testing.B) {
	l, advance := testLimiter(benchLimits())
	ips := benchIPs(100000)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		advance(time.Millisecond)
		start := time.Now()
		release, err := l.Acquire(ips[i%len(ips)])
		if err != nil {
			b.Fatal(err)
		}
		release()
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
	b.ReportMetric(float64(lat[len(lat)*999/1000].Nanoseconds()), "p999-ns")
	slow, _ := slices.BinarySearch(lat, time.Millisecond)
	b.ReportMetric(float64(len(lat)-slow), "ops>1ms")
}

func BenchmarkLimiterParallel(b *testing.B) {
	l := NewLimiter(benchLimits())
	ips := benchIPs(100000)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(time.Now().UnixNano()) % len(ips)
		for pb.Next() {
			i = (i + 7919) % len(ips)
			release, err := l.Acquire(ips[i])
			if err != nil {
				b.Error(err)
				return
			}
			release()
		}
	})
}

// BenchmarkLimiterSweep: 100k sources each hold a stream, and each
// operation comes a minute after the one before — as often as a Limiter
// that sweeps its table every minute would sweep it.
func BenchmarkLimiterSweep(b *testing.B) {
	lim := benchLimits()
	lim.MaxTotal = 200000
	l, advance := testLimiter(lim)
	for _, ip := range benchIPs(100000) {
		if _, err := l.Acquire(ip); err != nil {
			b.Fatal(err)
		}
	}
	ip := netip.MustParseAddr("192.0.2.1")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		advance(time.Minute)
		release, err := l.Acquire(ip)
		if err != nil {
			b.Fatal(err)
		}
		release()
	}
}
