package socks

import (
	"net"
)

// prefixConn is a connection some of whose first bytes were already read
// (to tell SOCKS from HTTP, or by a buffered reader): reads return them
// first. It keeps the half-close and reset of the connection underneath.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the connection underneath.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// SetLinger lets an abort reset the TCP connection underneath.
func (c *prefixConn) SetLinger(sec int) error {
	if l, ok := c.Conn.(interface{ SetLinger(int) error }); ok {
		return l.SetLinger(sec)
	}
	return nil
}

// drained returns c, or the connection under it when c is a prefixConn
// whose prefix has been read (and so on down), so that transport.Conn sees
// the TCP connection itself and moves bytes on it with its fastest calls.
func drained(c net.Conn) net.Conn {
	for {
		pc, ok := c.(*prefixConn)
		if !ok || len(pc.prefix) > 0 {
			return c
		}
		c = pc.Conn
	}
}
