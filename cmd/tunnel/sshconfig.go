package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
)

// sshConfFile is the file `ssh-config --install` writes in ~/.ssh, and
// sshInclude the line it puts at the top of ~/.ssh/config.
const (
	sshConfFile = "tunnel.conf"
	sshInclude  = "Include " + sshConfFile
)

func sshConfigCommand() *cli.Command {
	return &cli.Command{
		Name:      "ssh-config",
		Usage:     "print (or --install) the OpenSSH settings that make ssh pi@<device>.tunnel just work",
		UsageText: "tunnel ssh-config [--relay ADDR] [--install]",
		Description: `Prints a 'Host *.tunnel' block for ~/.ssh/config: ProxyCommand runs this
binary's 'connect %h %p', and KnownHostsCommand its 'known-hosts %H %p',
so that ssh checks the device's sshd host keys against what the device
itself vouches for over the end-to-end connection (the name is the
device's key): no "authenticity of host can't be established" prompt, and
StrictHostKeyChecking yes. Needs OpenSSH 8.5 or later.
The commands name this binary by its absolute path, and this --home when
it is not the default; they go through the socksd running with that home,
else through --relay if given here, else TUNNEL_RELAY.
On Windows the paths are written with forward slashes, for Windows
OpenSSH, which runs ProxyCommand without a shell, and ~/.ssh is
%USERPROFILE%\.ssh (the ssh Windows 10 ships, 8.1, is too old for
KnownHostsCommand; Windows 11 24H2 ships 9.5).
--install writes the block to ~/.ssh/tunnel.conf and puts 'Include
tunnel.conf' at the top of ~/.ssh/config (created 0600 if missing); a file
it changes is first copied to NAME.tunnel-backup. Running it again changes
nothing.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "relay", Usage: "put --relay `ADDR` in the commands (for a machine with no socksd running)"},
			&cli.BoolFlag{Name: "install", Usage: "write ~/.ssh/tunnel.conf and include it from ~/.ssh/config"},
			&cli.StringFlag{Name: "ssh-dir", Hidden: true, Usage: "the ~/.ssh to install into (tests)"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			block, err := sshConfigBlock(c)
			if err != nil {
				return err
			}
			if !c.Bool("install") {
				_, err := fmt.Fprint(c.App.Writer, block)
				return err
			}
			dir := c.String("ssh-dir")
			if dir == "" {
				home, err := os.UserHomeDir()
				if err != nil {
					return fmt.Errorf("find ~/.ssh: %w", err)
				}
				dir = filepath.Join(home, ".ssh")
			}
			changed, err := installSSHConfig(dir, block)
			if err != nil {
				return err
			}
			if len(changed) == 0 {
				fmt.Fprintf(c.App.Writer, "%s already includes %s: nothing to change\n", filepath.Join(dir, "config"), sshConfFile)
				return nil
			}
			for _, s := range changed {
				fmt.Fprintln(c.App.Writer, s)
			}
			fmt.Fprintln(c.App.Writer, "Now: ssh USER@<device-id>.tunnel (or a name: tunnel name add NAME ID)")
			return nil
		},
	}
}

// sshConfigBlock is the Host *.tunnel block for this binary, home and
// relay.
func sshConfigBlock(c *cli.Context) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this binary's path: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("find this binary's path: %w", err)
	}
	words := []string{exe}
	if home := c.String("home"); home != defaultHome() {
		abs, err := filepath.Abs(home)
		if err != nil {
			return "", fmt.Errorf("--home %s: %w", home, err)
		}
		words = append(words, "--home", abs)
	}
	var relay []string
	if r := c.String("relay"); r != "" {
		if _, err := resolver.ParseRelayList(r); err != nil {
			return "", usageError{err}
		}
		relay = []string{"--relay", r}
	}
	cmd := func(sub ...string) (string, error) {
		all := append(append(append([]string{}, words...), sub[0]), relay...)
		return sshCommand(runtime.GOOS, append(all, sub[1:]...))
	}
	proxy, err := cmd("connect", "%h", "%p")
	if err != nil {
		return "", err
	}
	known, err := cmd("known-hosts", "%H", "%p")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(`# Written by 'tunnel ssh-config': reach <device-id>.tunnel and pet names through
# tunnel, with the sshd host keys the device vouches for (OpenSSH 8.5 or later).
Host *.tunnel
    ProxyCommand %s
    KnownHostsCommand %s
    StrictHostKeyChecking yes
`, proxy, known), nil
}

// installSSHConfig writes block to dir/tunnel.conf and includes it at the
// top of dir/config, each only if it differs, each file replaced whole,
// after a copy of the old one to
// NAME.tunnel-backup. It returns what it did, one line each; nothing if
// all was in place. On an error nothing has been changed, or (if the
// second file fails) only tunnel.conf, which nothing includes yet.
func installSSHConfig(dir, block string) ([]string, error) {
	cfgPath := filepath.Join(dir, "config")
	confPath := filepath.Join(dir, sshConfFile)
	cfg, err := os.ReadFile(cfgPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, usageError{fmt.Errorf("read %s: %w", cfgPath, err)}
	}
	cfgExists := err == nil
	old, err := os.ReadFile(confPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, usageError{fmt.Errorf("read %s: %w", confPath, err)}
	}
	confExists := err == nil
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	var did []string
	if !confExists || string(old) != block {
		if confExists {
			if err := writeWhole(confPath+".tunnel-backup", old, 0o600); err != nil {
				return nil, err
			}
		}
		if err := writeWhole(confPath, []byte(block), 0o600); err != nil {
			return nil, err
		}
		did = append(did, "wrote "+confPath)
	}
	if !includesTunnelConf(cfg) {
		if cfgExists {
			if err := writeWhole(cfgPath+".tunnel-backup", cfg, 0o600); err != nil {
				return did, err
			}
		}
		mode := fs.FileMode(0o600)
		if fi, err := os.Stat(cfgPath); err == nil {
			mode = fi.Mode().Perm()
		}
		next := append([]byte("# Added by 'tunnel ssh-config --install': *.tunnel hosts.\n"+sshInclude+"\n\n"), cfg...)
		if err := writeWhole(cfgPath, next, mode); err != nil {
			return did, err
		}
		line := "added '" + sshInclude + "' at the top of " + cfgPath
		if cfgExists {
			line += " (the old one is in " + cfgPath + ".tunnel-backup)"
		}
		did = append(did, line)
	}
	return did, nil
}

// includesTunnelConf reports whether an ssh config already has our
// Include line before its first Host or Match block (where it applies to
// every host).
func includesTunnelConf(cfg []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(strings.ReplaceAll(sc.Text(), "=", " "))
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToLower(f[0]) {
		case "host", "match":
			return false
		case "include":
			for _, p := range f[1:] {
				if p == sshConfFile || strings.HasSuffix(p, "/.ssh/"+sshConfFile) || strings.HasSuffix(p, `\.ssh\`+sshConfFile) {
					return true
				}
			}
		}
	}
	return false
}

// writeWhole replaces path with b, whole or not at all (identity.WriteFile).
func writeWhole(path string, b []byte, mode fs.FileMode) error {
	if err := identity.WriteFile(path, b, mode, true); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
