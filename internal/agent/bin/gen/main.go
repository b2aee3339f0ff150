// Command gen builds the opensbx-agent program for every architecture of
// package bin and writes the gzipped programs and versions.txt into the
// current directory (go generate runs it in internal/agent/bin).
//
// The build is reproducible: a pinned toolchain (GOTOOLCHAIN, fetched
// through the module proxy when it is not the local one), CGO_ENABLED=0,
// GOOS=linux, fixed GOAMD64/GOARM64, -trimpath, -buildvcs=false and
// -ldflags "-s -w -buildid=", and no influence from the caller's GOFLAGS or
// go.work. gzip writes no name and no time.
//
// With -check it builds into a temporary directory instead and exits 1
// when a committed program differs (decompressed) from the fresh build or
// from versions.txt.
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// toolchain is the Go release the programs are built with; changing it
// changes their bytes (run `make agent` afterwards).
const toolchain = "go1.26.8"

const pkg = "github.com/opensbx/opensbx/internal/agent/cmd/opensbx-agent"

var arches = []string{"amd64", "arm64"}

func main() {
	check := flag.Bool("check", false, "rebuild and compare with the committed files instead of writing them")
	dir := flag.String("dir", "", "directory of package bin (default: the current directory, or internal/agent/bin of the module with -check)")
	flag.Parse()
	if err := run(*check, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(check bool, dir string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if dir == "" {
		if check {
			dir = filepath.Join(root, "internal", "agent", "bin")
		} else if dir, err = os.Getwd(); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp("", "opensbx-agent-gen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var versions strings.Builder
	var stale []string
	for _, arch := range arches {
		out := filepath.Join(tmp, "opensbx-agent-"+arch)
		if err := build(root, arch, out); err != nil {
			return err
		}
		prog, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(prog)
		fmt.Fprintf(&versions, "%s %s %d\n", arch, hex.EncodeToString(sum[:]), len(prog))
		gzPath := filepath.Join(dir, "opensbx-agent-linux-"+arch+".gz")
		old, _ := gunzipFile(gzPath)
		if check {
			if !bytes.Equal(old, prog) {
				stale = append(stale, filepath.Base(gzPath))
			}
			continue
		}
		if bytes.Equal(old, prog) {
			continue // the same program: keep the file (another gzip may differ)
		}
		gz, err := gzipBytes(prog)
		if err != nil {
			return err
		}
		if err := os.WriteFile(gzPath, gz, 0o644); err != nil {
			return err
		}
	}
	versionsPath := filepath.Join(dir, "versions.txt")
	if check {
		old, _ := os.ReadFile(versionsPath)
		if string(old) != versions.String() {
			stale = append(stale, "versions.txt")
		}
		if len(stale) > 0 {
			return fmt.Errorf("the committed agent programs differ from the source (%s): run `make agent` and commit", strings.Join(stale, ", "))
		}
		fmt.Println("agent programs match the source")
		return nil
	}
	return os.WriteFile(versionsPath, []byte(versions.String()), 0o644)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the opensbx module")
	}
	return filepath.Dir(mod), nil
}

func build(root, arch, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out, pkg)
	cmd.Dir = root
	env := []string{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOFLAGS", "GOWORK", "GOOS", "GOARCH", "GOAMD64", "GOARM64", "GOEXPERIMENT", "CGO_ENABLED", "GOTOOLCHAIN", "GO111MODULE":
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env,
		"CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOAMD64=v1", "GOARM64=v8.0",
		"GOFLAGS=-mod=readonly", "GOWORK=off", "GO111MODULE=on", "GOTOOLCHAIN="+toolchain)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build for %s: %w\n%s", arch, err, msg)
	}
	return nil
}

// gzipBytes compresses b without a name or a time, so the same program
// always gives the same bytes with the same compressor.
func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func gunzipFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(zr, 256<<20))
}
