// Package bin carries the opensbx-agent program (internal/agent/cmd/
// opensbx-agent) for linux/amd64 and linux/arm64, so that a binary built
// with the Opensbx library can put its agent into any sandbox.
//
// The programs are built reproducibly from this tree by `go generate
// ./internal/agent/...` (or `make agent`): CGO_ENABLED=0, -trimpath,
// -ldflags "-s -w -buildid=", a pinned toolchain, then gzip without name or
// timestamp. They are committed; `make agent-check` rebuilds them and fails
// when they differ from the source.
package bin

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/opensbx/opensbx/internal/sbxerr"
)

//go:generate go run ./gen

var (
	//go:embed opensbx-agent-linux-amd64.gz
	amd64Gz []byte
	//go:embed opensbx-agent-linux-arm64.gz
	arm64Gz []byte
	// versions lists "GOARCH SHA256 SIZE" for each program.
	//go:embed versions.txt
	versions string
)

// maxProgram bounds a decompressed program.
const maxProgram = 64 << 20

// Arches returns the architectures there is a program for.
func Arches() []string { return []string{"amd64", "arm64"} }

// Version returns the version of the program for goarch: the hex SHA-256
// of the program's bytes, as the agent reports it in its hello. Errors:
// sbxerr.ErrUnsupported for another architecture.
func Version(goarch string) (string, error) {
	v, _, err := entry(goarch)
	return v, err
}

func entry(goarch string) (version string, size int64, err error) {
	for _, line := range strings.Split(versions, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == goarch {
			if _, err := fmt.Sscan(f[2], &size); err != nil {
				return "", 0, fmt.Errorf("agent program for %s: bad size in versions.txt", goarch)
			}
			return f[1], size, nil
		}
	}
	return "", 0, sbxerr.New(sbxerr.ErrUnsupported, "no opensbx-agent program for linux/%s (have %s)", goarch, strings.Join(Arches(), ", "))
}

// Binary returns the program for goarch ("amd64" or "arm64"),
// decompressed and checked against its Version. Every call decompresses
// (about 30 ms); callers keep the result if they need it often.
// Errors: sbxerr.ErrUnsupported for another architecture.
func Binary(goarch string) ([]byte, error) {
	version, size, err := entry(goarch)
	if err != nil {
		return nil, err
	}
	gz := amd64Gz
	if goarch == "arm64" {
		gz = arm64Gz
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("agent program for %s: %w", goarch, err)
	}
	prog := make([]byte, 0, size)
	buf := bytes.NewBuffer(prog)
	if _, err := io.Copy(buf, io.LimitReader(zr, maxProgram)); err != nil {
		return nil, fmt.Errorf("agent program for %s: %w", goarch, err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if hex.EncodeToString(sum[:]) != version || int64(buf.Len()) != size {
		return nil, fmt.Errorf("agent program for %s does not match its version %s (run `make agent`)", goarch, version)
	}
	return buf.Bytes(), nil
}
