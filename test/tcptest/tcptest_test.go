package tcptest

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

func TestEchoHalfCloses(t *testing.T) {
	c, err := net.Dial("tcp", Echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo: %q, %v; want \"ping\" then EOF", got, err)
	}
}

func TestClosedPortRefuses(t *testing.T) {
	_, err := net.Dial("tcp", ClosedPort(t))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial: %v, want connection refused", err)
	}
}

// A handler blocked on its connection returns when the test ends, and
// cleanup waits for it: the goleak check in TestMain would see it
// otherwise.
func TestCleanupEndsBlockedHandlers(t *testing.T) {
	returned := make(chan struct{})
	var client net.Conn
	defer func() { client.Close() }()
	t.Run("inner", func(t *testing.T) {
		entered := make(chan struct{})
		addr := Serve(t, func(c net.Conn) {
			close(entered)
			c.Read(make([]byte, 1))
			close(returned)
		})
		var err error
		if client, err = net.Dial("tcp", addr); err != nil {
			t.Fatal(err)
		}
		<-entered
	})
	select {
	case <-returned:
	default:
		t.Fatal("the handler was still running after the test's cleanup")
	}
}
