// The local node's pod sandbox ("pause") image: holds the pod's namespaces, reaps orphaned
// children, and exits on SIGTERM or SIGINT. Our own stand-in for Kubernetes' pause image, which no
// reachable registry serves; containerd names it in sandbox_image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
