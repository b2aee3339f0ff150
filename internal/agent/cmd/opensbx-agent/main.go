//go:build linux

// Command opensbx-agent is the Opensbx agent, the program that runs inside
// every sandbox. It is static (CGO_ENABLED=0) and needs nothing from the
// image: no shell, no libc, no writable file system.
//
// Usage:
//
//	opensbx-agent serve [flags] [-- main command...]
//	opensbx-agent connect [-socket NAME]
//	opensbx-agent halt [-grace DURATION] [-socket NAME]
//	opensbx-agent unhalt [-socket NAME]
//	opensbx-agent version
//	opensbx-agent install [-mkdir] [-stay] DIR
//	opensbx-agent install -check DIR
//
// serve is the sandbox's long-lived daemon, run as root as the container's
// main process under the engine's init. It listens on an abstract unix
// socket that only root in the sandbox may use. With a main command after
// "--" it runs that command as a supervised child (as -main-user), forwards
// SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to it and exits
// with its exit status when it ends; without one it serves until SIGTERM or
// SIGINT and then exits at once with 128 plus the signal (143, 130), as a
// process that signal killed.
//
// connect hands its stdin and stdout to the daemon (wire.Handoff), which
// serves the session on them, and waits until the session ends; where
// that fails it relays its stdin to the daemon's socket and the socket to its
// stdout, until either side closes; the Manager runs it as an exec to open
// its session. It exits with 69 when no agent is running, 77 when the agent
// refused the connecting user (not root), 75 when the agent is busy.
//
// halt asks the serving agent to stop the sandbox while it runs on: every
// process but the agent's ends (SIGTERM, SIGKILL after -grace), the main
// command too, and commands are refused; unhalt runs the main command again
// and accepts commands. A Pod cannot stop and start again, so this is how
// the Kubernetes engine stops, starts and restarts a sandbox (a pod exec of
// each). They exit 69 when no agent runs, 3 when the agent does not run a
// sandbox, 1 on another failure.
//
// install copies the program itself to DIR/opensbx-agent (mode 0755): the
// init container of a Kubernetes sandbox runs it from the agent image to
// put the agent into the volume the sandbox's container runs it from. With
// -stay it then waits for SIGTERM: the pod of the DaemonSet that keeps the
// agent in a directory of every node (opensbx.AgentDaemonSet); -check is
// that pod's readiness probe.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opensbx/opensbx/internal/agent/server"
	"github.com/opensbx/opensbx/internal/agent/wire"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage:
  opensbx-agent serve [flags] [-- main command...]
  opensbx-agent connect [-socket NAME]
  opensbx-agent halt [-grace DURATION] [-socket NAME]
  opensbx-agent unhalt [-socket NAME]
  opensbx-agent version
  opensbx-agent install [-mkdir] [-stay] DIR
  opensbx-agent install -check DIR
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "connect":
		return connect(args[1:], stdin, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "opensbx-agent %s protocol %d\n", selfVersion(), wire.ProtocolVersion)
		return 0
	case "install":
		return installCmd(args[1:], stderr)
	case "halt":
		return haltCmd(args[1:], false, stdout, stderr)
	case "unhalt":
		return haltCmd(args[1:], true, stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return 2
}

// selfVersion is the hex SHA-256 of this program's executable.
func selfVersion() string {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "unknown"
	}
	return hex.EncodeToString(h.Sum(nil))
}

// installCmd is `install`: copy this program to DIR (-mkdir: making DIR
// first), and with -stay then wait for SIGTERM (a DaemonSet's pod that keeps
// the agent on its node); -check only reports, by its exit code, whether
// DIR holds this very program (the pod's readiness).
func installCmd(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mkdir := fs.Bool("mkdir", false, "make DIR (and its parents) first")
	stay := fs.Bool("stay", false, "after installing, wait for SIGTERM or SIGINT")
	check := fs.Bool("check", false, "exit 0 if DIR holds this program, 1 if not")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || !strings.HasPrefix(fs.Arg(0), "/") {
		fmt.Fprint(stderr, usage)
		return 2
	}
	dir := fs.Arg(0)
	if *check {
		if installed(dir) {
			return 0
		}
		return 1
	}
	// Caught before the copy, so that a SIGTERM meanwhile is not lost.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	if *mkdir {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintf(stderr, "opensbx-agent install: %v\n", err)
			return 1
		}
	}
	if err := install(dir); err != nil {
		fmt.Fprintf(stderr, "opensbx-agent install: %v\n", err)
		return 1
	}
	if *stay {
		<-sigs
	}
	return 0
}

// installed reports whether dir/opensbx-agent is this program, byte for
// byte.
func installed(dir string) bool {
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		return false
	}
	there, err := os.ReadFile(dir + "/opensbx-agent")
	return err == nil && bytes.Equal(self, there)
}

// install copies this program to dir/opensbx-agent through a temporary
// file renamed into place, so that a reader never sees half of it.
func install(dir string) error {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(dir, ".opensbx-agent-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dir+"/opensbx-agent")
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", wire.DefaultSocket, "unix socket to listen on (a leading @ makes it abstract)")
	user := fs.String("user", "", "default user of commands (the image's USER); empty: root")
	mainUser := fs.String("main-user", "", "user of the main command; empty: root")
	outputLimit := fs.Int("output-limit", 1<<20, "default bytes kept per output stream of a command")
	maxOutputLimit := fs.Int("max-output-limit", 64<<20, "largest output limit a command may ask for")
	maxRunning := fs.Int("max-running", 1024, "most commands running at once")
	maxFinished := fs.Int("max-finished", 256, "most finished commands kept")
	maxFinishedOutput := fs.Int64("max-finished-output", 256<<20, "most output bytes kept by finished commands together")
	maxSessions := fs.Int("max-sessions", 16, "most sessions (Manager connections) served at once")
	nofile := fs.Uint64("nofile", 0, "open-file limit (soft and hard) of the agent and every process it starts; 0: the inherited one")
	verbose := fs.Bool("v", false, "log debug messages to stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *nofile > 0 {
		// Where the engine sets no such limit (a Pod has none), the agent
		// sets it before anything starts, and every process inherits it.
		// syscall's Setrlimit, not x/sys's: it also stops the runtime from
		// giving children the limit the agent started with.
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: *nofile, Max: *nofile}); err != nil {
			fmt.Fprintf(stderr, "opensbx-agent serve: open-file limit %d: %v\n", *nofile, err)
			return 1
		}
	}
	// The agent's live heap is small; a lower GC target keeps its
	// resident memory small too (Go's minimum heap scales with it).
	debug.SetGCPercent(50)
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("component", "opensbx-agent")

	sup := server.NewSupervisor(fs.Args(), *mainUser, server.Config{})
	srv := server.New(server.Config{
		Version:           selfVersion(),
		DefaultUser:       *user,
		OutputLimit:       *outputLimit,
		MaxOutputLimit:    *maxOutputLimit,
		MaxRunning:        *maxRunning,
		MaxFinished:       *maxFinished,
		MaxFinishedOutput: *maxFinishedOutput,
		MaxSessions:       *maxSessions,
		Logger:            log,
		Sandbox:           sup,
	})
	// Signals are caught before anything starts, so none is lost.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	l, err := net.Listen("unix", *socket)
	if err != nil {
		fmt.Fprintf(stderr, "opensbx-agent serve: %v\n", err)
		return 1
	}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, server.ErrServerClosed) {
			log.Error("serve", "err", err)
		}
	}()
	if err := sup.Start(); err != nil {
		fmt.Fprintf(stderr, "opensbx-agent serve: main command: %v\n", err)
		var se *server.StartError
		if errors.As(err, &se) {
			return se.Code
		}
		return 126
	}
	for {
		select {
		case sig := <-sigs:
			if sup.Signal(sig) {
				continue // the main command's end decides
			}
			if sig == syscall.SIGTERM || sig == syscall.SIGINT {
				// No main command runs (there is none, or the sandbox is
				// halted): the sandbox stops, its processes go with it,
				// there is nothing to wait for. Exit as a process the
				// signal killed would (143 for SIGTERM), like the long
				// sleep that kept sandboxes alive before the agent.
				return 128 + int(sig.(syscall.Signal))
			}
		case code := <-sup.Exit():
			return code
		}
	}
}

func connect(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", wire.DefaultSocket, "the agent's unix socket")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	sock, err := dialAgent(*socket)
	if err != nil {
		fmt.Fprintf(stderr, "opensbx-agent connect: the sandbox's agent is not running (%v)\n", err)
		return wire.ExitNoAgent
	}
	b, err := readByte(sock, 10*time.Second)
	if err != nil {
		unix.Close(sock)
		fmt.Fprintf(stderr, "opensbx-agent connect: the sandbox's agent closed the connection (%v)\n", err)
		return wire.ExitNoAgent
	}
	switch b {
	case wire.HandshakeOK:
	case wire.HandshakeRefused:
		unix.Close(sock)
		fmt.Fprintln(stderr, "opensbx-agent connect: the agent refused the connection: only root in the sandbox may connect")
		return wire.ExitRefused
	case wire.HandshakeBusy:
		unix.Close(sock)
		fmt.Fprintln(stderr, "opensbx-agent connect: the agent serves as many sessions as it allows")
		return wire.ExitBusy
	default:
		unix.Close(sock)
		fmt.Fprintf(stderr, "opensbx-agent connect: unexpected handshake 0x%02x\n", b)
		return wire.ExitNoAgent
	}
	in, inOK := stdin.(*os.File)
	out, outOK := stdout.(*os.File)
	if inOK && outOK {
		if handOff(sock, int(in.Fd()), int(out.Fd())) == nil {
			waitEnd(sock) // the agent serves the session on them itself
		} else {
			relay(int(in.Fd()), int(out.Fd()), sock)
		}
		unix.Close(sock)
		return 0
	}
	// Not the process's own descriptors (tests): copy with goroutines.
	f := os.NewFile(uintptr(sock), "agent")
	defer f.Close()
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(f, stdin)
		unix.Shutdown(sock, unix.SHUT_WR)
		done <- struct{}{}
	}()
	go func() {
		io.Copy(stdout, f)
		done <- struct{}{}
	}()
	<-done
	return 0
}
