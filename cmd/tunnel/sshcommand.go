package main

import (
	"strings"
)

// How ssh runs the commands of the Host *.tunnel block, which decides how
// sshCommand writes them:
//
//   - ssh_config keeps the rest of a ProxyCommand or KnownHostsCommand line
//     as it is, after checking that its quotes balance.
//   - KnownHostsCommand is split into words by ssh itself: blanks separate,
//     double or single quotes group, a backslash escapes a quote, a
//     backslash or a blank; %-tokens and ${VAR} are expanded in each word.
//   - ProxyCommand, on Linux and macOS, is handed to the shell
//     ($SHELL -c "exec ..."), after %-tokens are expanded.
//   - ProxyCommand, with Windows OpenSSH (the one Windows 10 and later
//     ship), is run with no shell: the line, %-tokens expanded, becomes the
//     command line of CreateProcess, and tunnel.exe splits it by the
//     Microsoft C runtime's rules (double quotes group; backslashes are
//     literal unless a double quote follows them). A line that starts
//     with a double quote is passed as it is; one that does not may be
//     re-quoted by ssh.
//
// So on Windows a path's backslashes become forward slashes, which every
// Windows file API takes as separators and none of the three splitters
// treats specially, and the program's path is always double-quoted.

// sshCommand writes words (a program's absolute path, then its
// arguments) as one ProxyCommand or KnownHostsCommand line for ssh on
// goos. %h, %p and %H pass through for ssh to expand.
func sshCommand(goos string, words []string) (string, error) {
	var b strings.Builder
	for i, w := range words {
		q, err := sshWord(goos, w, i == 0)
		if err != nil {
			return "", err
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(q)
	}
	return b.String(), nil
}

// sshWord quotes w for an ssh_config command line on goos; program says
// it is the program's path. Characters one of the readers would take
// specially are refused rather than escaped: no sane path holds them.
func sshWord(goos, w string, program bool) (string, error) {
	if w == "%h" || w == "%p" || w == "%H" {
		return w, nil
	}
	if goos == "windows" {
		return sshWordWindows(w, program)
	}
	if strings.ContainsAny(w, "\"'`$\\%!\n\r\t") {
		return "", usagef("%q holds a character ssh_config cannot carry safely (quotes, $, \\, %%, !); "+
			"move the binary or the home to a plainer path", w)
	}
	if strings.ContainsAny(w, " #;&|<>()*?[]{}~") {
		return `"` + w + `"`, nil
	}
	return w, nil
}

// sshWordWindows is sshWord for Windows OpenSSH: no shell reads the line,
// so only what ssh or the C runtime would take specially is refused: a
// double quote (it cannot be escaped for both), % and $ (ssh expands
// them), the backquote, and control characters.
func sshWordWindows(w string, program bool) (string, error) {
	if strings.ContainsAny(w, "\"%$`") || strings.IndexFunc(w, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return "", usagef("%q holds a character Windows OpenSSH cannot carry safely (a double quote, %%, $, ` or a control character); "+
			"move the binary or the home to a plainer path", w)
	}
	w = strings.ReplaceAll(w, `\`, "/")
	if program || strings.ContainsAny(w, " '#") || w == "" {
		return `"` + w + `"`, nil
	}
	return w, nil
}
