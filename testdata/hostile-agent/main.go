// Command hostile-agent stands in for a sandbox's agent that code in the
// sandbox replaced: it listens on the agent's socket and answers every
// connection with garbage ("garbage"), or reads and never answers
// ("stall"). The Manager must fail such calls, never panic or hang.
package main

import (
	"crypto/rand"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	mode := "garbage"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	l, err := net.Listen("unix", "@opensbx-agent")
	if err != nil {
		os.Exit(1)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func(c net.Conn) {
			defer c.Close()
			if mode == "stall" {
				io.Copy(io.Discard, c)
				return
			}
			buf := make([]byte, 4096)
			for i := 0; i < 64; i++ {
				rand.Read(buf)
				if _, err := c.Write(buf); err != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}(c)
	}
}
