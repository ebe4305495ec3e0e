package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// TestSpliceHalfClose checks that EOF in one direction reaches the far end
// while the other direction goes on: a client sends its whole input, closes
// its write side, and only then receives the answer.
func TestSpliceHalfClose(t *testing.T) {
	client, inA := tcpPair(t)
	inB, server := tcpPair(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := Splice(context.Background(), Conn(inA), Conn(inB))
		done <- err
	}()
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	go func() {
		client.Write(payload)
		client.CloseWrite()
	}()
	got, err := io.ReadAll(server) // ends only if the half-close arrived
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("server read %d bytes, err %v", len(got), err)
	}
	reply := []byte("after EOF the other way still works")
	server.Write(reply)
	server.CloseWrite()
	back, err := io.ReadAll(client)
	if err != nil || !bytes.Equal(back, reply) {
		t.Fatalf("client read %q, err %v", back, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("splice: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("splice did not end after both directions closed")
	}
	client.Close()
	server.Close()
}

// TestSpliceAbort checks that a reset on one side aborts the other
// instead of ending it cleanly.
func TestSpliceAbort(t *testing.T) {
	client, inA := tcpPair(t)
	inB, server := tcpPair(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := Splice(context.Background(), Conn(inA), Conn(inB))
		done <- err
	}()
	client.Write([]byte("x"))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatal(err)
	}
	server.SetLinger(0)
	server.Close() // RST
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("splice reported success after a reset")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("splice did not end after a reset")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(client); err == nil {
		t.Fatal("client saw a clean end, want a reset")
	}
	client.Close()
}

func TestSpliceContextCancel(t *testing.T) {
	client, inA := tcpPair(t)
	inB, server := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := Splice(ctx, Conn(inA), Conn(inB))
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("cancelled splice returned nil")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("splice ignored its context")
	}
	client.Close()
	server.Close()
}
