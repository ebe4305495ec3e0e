//go:build !unix

package main

import "os"

// Windows has no SIGHUP: there a daemon reloads by restarting.
const reloadSignalName = ""

func notifyReload(chan<- os.Signal) {}
