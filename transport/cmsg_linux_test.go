//go:build linux

package transport

import (
	"bytes"
	"syscall"
	"testing"
)

// FuzzCmsgData checks the allocation-free control message walk against
// the standard library's parser: wherever that one parses oob, both find
// the same data for the UDP_SEGMENT and UDP_GRO messages; on any input
// cmsgData returns a slice of oob or nil, never panics.
func FuzzCmsgData(f *testing.F) {
	f.Add(gsoOOB(1252))
	f.Add(append(gsoOOB(1300), gsoOOB(77)...))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 40))
	f.Fuzz(func(t *testing.T, oob []byte) {
		msgs, err := syscall.ParseSocketControlMessage(oob)
		for _, typ := range []int32{udpSegment, udpGRO} {
			got := cmsgData(oob, solUDP, typ)
			if err != nil {
				continue
			}
			var want []byte
			for _, m := range msgs {
				if m.Header.Level == solUDP && m.Header.Type == typ {
					want = m.Data
					break
				}
			}
			if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
				t.Fatalf("type %d: got %x, want %x", typ, got, want)
			}
		}
	})
}
