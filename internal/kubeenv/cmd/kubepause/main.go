//go:build unix

// Command kubepause is the sandbox ("pause") process of the Kubernetes test
// cluster's pods: it holds the pod's namespaces, reaps the zombies that
// reach it and exits on SIGINT or SIGTERM. kubecluster builds it statically
// and imports it into the cluster's containerd as the sandbox image, so no
// pause image is ever pulled.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
