//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// relayEnv is a relay between pipes (its stdin and stdout) and one end of a
// socket pair (the agent's side is agent).
type relayEnv struct {
	stdin, stdout *os.File // the Manager's ends
	agent         *os.File
	done          chan error
}

func newRelay(t *testing.T, nonblocking bool) *relayEnv {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	in, out := int(inR.Fd()), int(outW.Fd()) // Fd leaves them blocking
	if nonblocking {
		unix.SetNonblock(in, true)
		unix.SetNonblock(out, true)
	}
	e := &relayEnv{stdin: inW, stdout: outR, agent: os.NewFile(uintptr(pair[1]), "agent"), done: make(chan error, 1)}
	go func() {
		err := relay(in, out, pair[0])
		unix.Close(pair[0])
		outW.Close()
		inR.Close()
		e.done <- err
	}()
	t.Cleanup(func() {
		e.stdin.Close()
		e.agent.Close()
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			t.Error("the relay did not end")
		}
		e.stdout.Close()
	})
	return e
}

// TestRelayBothWays: a megabyte each way at once gets through whole and in
// order, the Manager's end half-closes the agent's side (the other way
// stays open), and the agent's end ends the relay.
func TestRelayBothWays(t *testing.T) {
	for _, nb := range []bool{false, true} {
		name := "blocking"
		if nb {
			name = "nonblocking"
		}
		t.Run(name, func(t *testing.T) {
			e := newRelay(t, nb)
			up, down := make([]byte, 1<<20), make([]byte, 1<<20)
			rand.Read(up)
			rand.Read(down)
			gotUp, gotDown := make(chan []byte, 1), make(chan []byte, 1)
			upRead := make(chan struct{})
			go func() { b, _ := io.ReadAll(e.agent); gotUp <- b; close(upRead) }()
			go func() { b, _ := io.ReadAll(e.stdout); gotDown <- b }()
			go func() {
				e.stdin.Write(up)
				e.stdin.Close() // the Manager is done sending
			}()
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				e.agent.Write(down) // at the same time the other way
				<-upRead            // (the end of the agent's side ends the relay)
				unix.Shutdown(int(e.agent.Fd()), unix.SHUT_WR)
			}()
			if !bytes.Equal(<-gotUp, up) { // ends: the relay half-closed the socket
				t.Fatal("the agent got other bytes than the Manager sent")
			}
			if !bytes.Equal(<-gotDown, down) {
				t.Fatal("the Manager got other bytes than the agent sent")
			}
			<-sent
			select {
			case err := <-e.done:
				if err != nil {
					t.Fatal(err)
				}
				e.done <- nil // for the cleanup
			case <-time.After(10 * time.Second):
				t.Fatal("the relay did not end with the agent's side")
			}
		})
	}
}

// TestRelayMessages: small messages cross one at a time, as requests and
// answers do.
func TestRelayMessages(t *testing.T) {
	e := newRelay(t, false)
	buf := make([]byte, 64)
	for i := range 100 {
		msg := []byte{byte(i), 'x', 'y'}
		if _, err := e.stdin.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(e.agent, buf[:3]); err != nil || !bytes.Equal(buf[:3], msg) {
			t.Fatalf("up %d: %q %v", i, buf[:3], err)
		}
		if _, err := e.agent.Write(msg[:2]); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(e.stdout, buf[:2]); err != nil || !bytes.Equal(buf[:2], msg[:2]) {
			t.Fatalf("down %d: %q %v", i, buf[:2], err)
		}
	}
}
