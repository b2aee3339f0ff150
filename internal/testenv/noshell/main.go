// Command noshell is the only program in the test image NoShellImage, which
// has no shell and no other binaries. It is built statically and installed
// as /app.
//
// Usage:
//
//	/app                 block until SIGTERM or SIGINT, then exit 0 (a keep-alive)
//	/app echo ARGS...    print ARGS separated by spaces and a newline
//	/app exit N          exit with status N
//	/app sleep SECONDS   sleep (fractions allowed), then exit 0
//
// A SIGTERM or SIGINT during sleep exits with 128+signal, like a shell would.
package main

import (
	"fmt"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	// As PID 1 in a container a signal without a handler is ignored, so
	// handle the stop signals explicitly in every mode.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	if len(args) == 0 {
		<-sigs
		return 0
	}
	switch args[0] {
	case "echo":
		fmt.Println(strings.Join(args[1:], " "))
		return 0
	case "exit":
		if len(args) != 2 {
			return usage("exit takes one argument")
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 0 || n > 255 {
			return usage("exit: bad status " + strconv.Quote(args[1]))
		}
		return n
	case "sleep":
		if len(args) != 2 {
			return usage("sleep takes one argument")
		}
		secs, err := strconv.ParseFloat(args[1], 64)
		if err != nil || secs < 0 {
			return usage("sleep: bad duration " + strconv.Quote(args[1]))
		}
		d := time.Duration(math.MaxInt64)
		if secs < d.Seconds() {
			d = time.Duration(secs * float64(time.Second))
		}
		select {
		case <-time.After(d):
			return 0
		case sig := <-sigs:
			return 128 + int(sig.(syscall.Signal))
		}
	default:
		return usage("unknown command " + strconv.Quote(args[0]))
	}
}

func usage(msg string) int {
	fmt.Fprintf(os.Stderr, "app: %s\nusage: app [echo ARGS... | exit N | sleep SECONDS]\n", msg)
	return 2
}
