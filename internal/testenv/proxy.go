package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// EngineProxy is a TCP proxy in front of the local engine's unix socket,
// so that a test can use the engine the way a remote one is used
// (DOCKER_HOST=tcp://...), and cut it off and bring it back as if the
// engine went away.
type EngineProxy struct {
	// Host is the DOCKER_HOST of the proxy ("tcp://127.0.0.1:port").
	Host string

	socket string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

// NewEngineProxy starts a proxy to the engine's socket; it is closed when
// the test ends.
func NewEngineProxy(t testing.TB) *EngineProxy {
	t.Helper()
	p := &EngineProxy{socket: "/var/run/docker.sock", conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("engine proxy: %v", err)
	}
	p.addr = ln.Addr().String()
	p.Host = "tcp://" + p.addr
	p.serve(ln)
	t.Cleanup(p.close)
	return p
}

func (p *EngineProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", p.socket)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(c, up)
			go p.pipe(up, c)
		}
	}()
}

func (p *EngineProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	if tc, ok := dst.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
	} else {
		dst.Close()
	}
}

// Cut closes the listener and every connection: the engine is gone.
func (p *EngineProxy) Cut() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

// Restore listens again on the same address.
func (p *EngineProxy) Restore(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("engine proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

func (p *EngineProxy) close() {
	p.Cut()
	p.wg.Wait()
}
