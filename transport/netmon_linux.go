package transport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// netlinkGroups are the rtnetlink multicast groups whose messages mean the
// host's addresses or routes may have changed: RTMGRP_LINK,
// RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR and
// RTMGRP_IPV6_ROUTE of <linux/rtnetlink.h>, which package syscall does
// not name.
const netlinkGroups = 0x1 | 0x10 | 0x40 | 0x100 | 0x400

// watchNetlink subscribes to rtnetlink's link, address and route groups
// and sends on the returned channel (without blocking: one pending
// notice is enough) whenever messages arrive, until ctx ends. Its reader
// goroutine is counted in wg. The socket is the namespace's the calling
// thread is in.
func watchNetlink(ctx context.Context, wg *sync.WaitGroup) (<-chan struct{}, error) {
	f, err := openNetlink()
	if err != nil {
		return nil, err
	}
	events := make(chan struct{}, 1)
	notify := func() {
		select {
		case events <- struct{}{}:
		default:
		}
	}
	// Closing the file wakes the reader: the fd is non-blocking and in
	// the runtime's poller.
	stop := context.AfterFunc(ctx, func() { f.Close() })
	wg.Go(func() {
		defer stop()
		// The messages themselves are not parsed: any of them only says
		// "read the fingerprint again", which is what tells a change. So
		// the buffer is small: a longer datagram is cut, and the read
		// still takes all of it off the socket. (A 64 KiB one lived on
		// this goroutine's stack and made it 128 KiB, for as long as the
		// node runs.)
		var buf [512]byte
		for {
			_, err := f.Read(buf[:])
			switch {
			case err == nil:
				notify()
			case errors.Is(err, syscall.ENOBUFS):
				// The kernel dropped messages for us: something changed.
				notify()
			default:
				return // closed
			}
		}
	})
	return events, nil
}

// openNetlink opens a non-blocking rtnetlink socket bound to
// netlinkGroups, as an *os.File so that reads park in the poller.
func openNetlink() (*os.File, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, syscall.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK, Groups: netlinkGroups}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("bind netlink socket to groups %#x: %w", netlinkGroups, err)
	}
	return os.NewFile(uintptr(fd), "netlink"), nil
}
