//go:build unix

package main

import (
	"os"
	"os/signal"
	"syscall"
)

// reloadSignalName is the signal that asks a daemon to reload.
const reloadSignalName = "SIGHUP"

func notifyReload(ch chan<- os.Signal) { signal.Notify(ch, syscall.SIGHUP) }
