// Command testprog is the only program in sdhub's swarm test image: it
// blocks until SIGTERM or SIGINT, or with -exit N exits at once with code N,
// so tests get running tasks and tasks that have exited.
package main

import (
	"flag"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	code := flag.Int("exit", -1, "exit at once with this code instead of blocking")
	flag.Parse()
	if *code >= 0 {
		os.Exit(*code)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
