package socks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// clientHelperEnv, when set to "KIND[,KIND…] ADDR" (KIND socks or http),
// makes the test binary a client of the server at ADDR instead of running
// tests: it prints the outcome of one CONNECT per KIND (reply=0xNN or
// status=NNN), space-separated, and exits. TestOwnerOnlyOtherUser runs it
// as another user.
const clientHelperEnv = "TUNNEL_SOCKS_TEST_CLIENT"

func clientHelper(args string) int {
	kinds, addr, _ := strings.Cut(args, " ")
	for i, kind := range strings.Split(kinds, ",") {
		if i > 0 {
			fmt.Print(" ")
		}
		if code := clientHelperConnect(kind, addr); code != 0 {
			return code
		}
	}
	fmt.Println()
	return 0
}

func clientHelperConnect(kind, addr string) int {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	switch kind {
	case "socks":
		c, err := Dial(ctx, addr, "x.tunnel", 22)
		if re, ok := errors.AsType[*ReplyError](err); ok {
			fmt.Printf("reply=%#02x", re.Code)
			return 0
		}
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		c.Close()
		fmt.Print("reply=0x00")
	case "http":
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(ioTimeout))
		io.WriteString(c, "CONNECT x.tunnel:22 HTTP/1.1\r\nHost: x.tunnel:22\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Printf("status=%d", resp.StatusCode)
	}
	return 0
}
