package main

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// The command lines for Windows OpenSSH: backslashes become slashes, the
// program is double-quoted, a word with a blank or an apostrophe too; and
// both of Windows' readers, ssh's word splitter (KnownHostsCommand) and
// the C runtime's (ProxyCommand, no shell), get back the same words.
func TestSSHCommandWindows(t *testing.T) {
	for _, c := range []struct {
		words []string
		want  string
	}{
		{
			[]string{`C:\Users\Jane Doe\AppData\Local\Programs\tunnel\tunnel.exe`, "--home", `C:\Users\O'Brien\tunnel home`, "connect", "--relay", "relay.example:7443", "%h", "%p"},
			`"C:/Users/Jane Doe/AppData/Local/Programs/tunnel/tunnel.exe" --home "C:/Users/O'Brien/tunnel home" connect --relay relay.example:7443 %h %p`,
		},
		{
			[]string{`C:\tools\tunnel.exe`, "known-hosts", "%H", "%p"},
			`"C:/tools/tunnel.exe" known-hosts %H %p`,
		},
		{
			[]string{`\\nas\share\bin\tunnel.exe`, "--home", `D:\t#1`, "connect", "%h", "%p"},
			`"//nas/share/bin/tunnel.exe" --home "D:/t#1" connect %h %p`,
		},
	} {
		got, err := sshCommand("windows", c.words)
		if err != nil || got != c.want {
			t.Errorf("sshCommand(windows, %q) = %s, %v\nwant %s", c.words, got, err, c.want)
			continue
		}
		var want []string
		for _, w := range c.words {
			want = append(want, strings.ReplaceAll(w, `\`, "/"))
		}
		for name, split := range map[string]func(string) ([]string, error){"ssh": opensshSplit, "C runtime": crtSplit} {
			if words, err := split(got); err != nil || !reflect.DeepEqual(words, want) {
				t.Errorf("%s splits %s into %q, %v; want %q", name, got, words, err, want)
			}
		}
	}
}

// What Windows OpenSSH would expand or cannot carry is refused, as a
// usage error that says what to do.
func TestSSHCommandWindowsRefuses(t *testing.T) {
	for _, w := range []string{`C:\100%\tunnel.exe`, `C:\a"b\tunnel.exe`, `C:\$x\tunnel.exe`, "C:\\t\tx\\tunnel.exe", "C:\\`x\\tunnel.exe"} {
		_, err := sshCommand("windows", []string{w, "connect", "%h", "%p"})
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "plainer path") {
			t.Errorf("%q: %v, want a usage error", w, err)
		}
	}
}

// Linux and macOS keep their rules: a blank is quoted for the shell, a
// backslash is refused.
func TestSSHCommandUnix(t *testing.T) {
	got, err := sshCommand("darwin", []string{"/Users/jane/Library/Application Support/tunnel/tunnel", "connect", "%h", "%p"})
	if want := `"/Users/jane/Library/Application Support/tunnel/tunnel" connect %h %p`; err != nil || got != want {
		t.Errorf("darwin: %s, %v; want %s", got, err, want)
	}
	if got, err := sshCommand("linux", []string{"/usr/bin/tunnel", "connect", "%h", "%p"}); err != nil || got != "/usr/bin/tunnel connect %h %p" {
		t.Errorf("linux: %s, %v", got, err)
	}
	if _, err := sshCommand("linux", []string{`/opt/a\b/tunnel`, "connect"}); err == nil {
		t.Error("linux: a backslash was accepted")
	}
}

// opensshSplit splits a line as OpenSSH's argv_split does.
func opensshSplit(s string) ([]string, error) {
	var words []string
	for i := 0; i < len(s); {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i == len(s) {
			break
		}
		var w strings.Builder
		var quote byte
		for ; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '\\' && i+1 < len(s) && (strings.IndexByte(`'"\`, s[i+1]) >= 0 || quote == 0 && s[i+1] == ' '):
				i++
				w.WriteByte(s[i])
			case quote == 0 && (c == ' ' || c == '\t'):
				goto end
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
			case quote != 0 && c == quote:
				quote = 0
			default:
				w.WriteByte(c)
			}
		}
	end:
		if quote != 0 {
			return nil, fmt.Errorf("unbalanced %c", quote)
		}
		words = append(words, w.String())
	}
	return words, nil
}

// crtSplit splits a command line as the Microsoft C runtime does, for
// lines with no backslash (sshCommand writes none on Windows).
func crtSplit(s string) ([]string, error) {
	if strings.Contains(s, `\`) || strings.Contains(s, `""`) {
		return nil, errors.New("outside what this oracle reads")
	}
	var words []string
	var w strings.Builder
	in, quoted := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted, in = !quoted, true
		case !quoted && (c == ' ' || c == '\t'):
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if quoted {
		return nil, errors.New("unbalanced quote")
	}
	if in {
		words = append(words, w.String())
	}
	return words, nil
}
