package transport

import (
	"crypto/hmac"
	"crypto/sha256"
)

// frameMACLen is the MAC that ends a ping, a pong, a keep and a kept
// frame: HMAC-SHA256 truncated to 16 bytes.
const frameMACLen = 16

// appendFrameMAC appends the MAC of b[start:] under key.
func appendFrameMAC(b []byte, start int, key []byte) []byte {
	sum := frameHMAC(key, b[start:])
	return append(b, sum[:frameMACLen]...)
}

// frameMACValid checks the MAC that ends frame b under key.
func frameMACValid(b, key []byte) bool {
	body := len(b) - frameMACLen
	if body < 0 {
		return false
	}
	sum := frameHMAC(key, b[:body])
	return hmac.Equal(sum[:frameMACLen], b[body:])
}

// HMAC's block (SHA-256's) and the longest message frameHMAC takes on the
// stack: the frames MACed here are far shorter (a keep's 58 bytes, a lease
// key's 65).
const (
	macBlock    = 64
	macStackMax = 128
)

// frameHMAC is HMAC-SHA256 (RFC 2104) of msg under key, computed over
// buffers on the stack. The frames are MACed at every heartbeat, keep and
// kept, at both ends, and crypto/hmac allocates two digests and its pads
// each time (some 600 bytes): most of what an idle agent allocated, and
// three times per keep in a relay. A longer message takes a buffer from
// the heap.
func frameHMAC(key, msg []byte) [sha256.Size]byte {
	var short [sha256.Size]byte
	if len(key) > macBlock {
		short = sha256.Sum256(key)
		key = short[:]
	}
	var stack [macBlock + macStackMax]byte
	var inner []byte
	if len(msg) <= macStackMax {
		inner = stack[:macBlock+len(msg)]
	} else {
		inner = make([]byte, macBlock+len(msg))
	}
	var outer [macBlock + sha256.Size]byte
	copy(inner, key)
	copy(outer[:], key)
	for i := range macBlock {
		inner[i] ^= 0x36
		outer[i] ^= 0x5c
	}
	copy(inner[macBlock:], msg)
	sum := sha256.Sum256(inner)
	copy(outer[macBlock:], sum[:])
	return sha256.Sum256(outer[:])
}
