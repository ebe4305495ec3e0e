package socks

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// ErrBadPassword is wrapped by ReadNewPassword's refusals of what was typed.
var ErrBadPassword = errors.New("unusable password")

// ReadNewPassword asks for user's new password twice on a terminal,
// without echo, or reads one line from in when it is not a terminal (for
// scripts). A password that differs between the two, or that
// CheckPassword refuses, is an error wrapping ErrBadPassword.
func ReadNewPassword(in io.Reader, prompt io.Writer, user string) (string, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(prompt, "Password for %s: ", user)
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(prompt, "Again: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", err
		}
		if string(pw) != string(again) {
			return "", fmt.Errorf("%w: the two passwords differ; nothing written", ErrBadPassword)
		}
		if err := CheckPassword(string(pw)); err != nil {
			return "", fmt.Errorf("%w: %w", ErrBadPassword, err)
		}
		return string(pw), nil
	}
	// One line, of a bounded length: a password is at most 72 bytes.
	line, err := bufio.NewReader(io.LimitReader(in, 1024)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if err := CheckPassword(pw); err != nil {
		return "", fmt.Errorf("%w: password on standard input: %w", ErrBadPassword, err)
	}
	return pw, nil
}
