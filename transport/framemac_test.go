package transport

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// frameHMAC is HMAC-SHA256 for every key and message length around the
// block and the stack buffer's edges, on both of its ways.
func TestFrameHMACIsHMACSHA256(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for klen := range 2*macBlock + 2 {
		for mlen := range macStackMax + 40 {
			key := make([]byte, klen)
			msg := make([]byte, mlen)
			for i := range key {
				key[i] = byte(rng.Uint32())
			}
			for i := range msg {
				msg[i] = byte(rng.Uint32())
			}
			m := hmac.New(sha256.New, key)
			m.Write(msg)
			want := m.Sum(nil)
			if got := frameHMAC(key, msg); !bytes.Equal(got[:], want) {
				t.Fatalf("key of %d bytes, message of %d: frameHMAC %x, HMAC-SHA256 %x", klen, mlen, got, want)
			}
		}
	}
}

// The frames MACed at every heartbeat and keep cost no allocation.
func TestFrameMACAllocs(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	var secret [32]byte
	l := Lease{Endpoint: 9, Expires: 1 << 40, Key: leaseKeyOf(secret[:], Lease{Endpoint: 9, Expires: 1 << 40})}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		b := appendDisco(buf[:0], discoMsg{typ: frameDiscoPing, src: 1, dst: 2, seq: 3}, key)
		if !frameMACValid(b, key) {
			t.Fatal("a ping's own MAC does not hold")
		}
		_ = appendKeep(buf[:0], l, 4, false)
		_ = leaseKeyOf(secret[:], l)
	}); n != 0 {
		t.Fatalf("%v allocations to MAC a ping, check it, MAC a keep and derive a lease key; want 0", n)
	}
}
