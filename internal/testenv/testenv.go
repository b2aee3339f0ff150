// Package testenv is the one place tests get a Docker engine and the test
// images from.
//
// Tests call [Engine] for a client (skipped without an engine, failed under
// CI=true) and [Images] before using [BusyboxImage] or [NoShellImage]. Both
// images are built locally from files on this machine, never pulled: the
// busybox image from /bin/busybox (Debian's busybox-static) and the no-shell
// image from the noshell program in this directory. scripts/docker-up.sh
// installs and starts everything they need; `make test` runs it first.
//
// It deliberately does not clean up containers: tests own theirs.
package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

const (
	// BusyboxImage is a test image made FROM scratch with the static
	// /bin/busybox and its applets linked into /bin (so /bin/sh exists),
	// a standard PATH, /tmp (mode 1777), /root, and an /etc/passwd that
	// knows root and nobody.
	BusyboxImage = "opensbx-test/busybox:1"

	// NoShellImage is a test image made FROM scratch with nothing but one
	// static Go binary at /app (see ./noshell) and an empty /tmp: no shell.
	// Its default command is /app, which blocks until SIGTERM.
	NoShellImage = "opensbx-test/noshell:1"

	// RegistryAddr is the local registry that scripts/docker-up.sh starts,
	// listening on loopback only, without TLS or auth.
	RegistryAddr = "127.0.0.1:5000"

	// ImageLabel is the label put on every image this package builds. Its
	// value is the hash of everything the image was made from, so an image
	// whose label matches is reused.
	ImageLabel = "org.opensbx.test-image"
)

const (
	pingTimeout  = 10 * time.Second
	buildTimeout = 5 * time.Minute
	busyboxPath  = "/bin/busybox"
	upScript     = "scripts/docker-up.sh"
)

//go:embed noshell/main.go
var noshellSource []byte

// Connect returns a Docker client configured from the environment
// (DOCKER_HOST and friends) with API version negotiation, after the engine
// answered a Ping within 10 seconds. On error it returns nil and closes
// what it opened; otherwise the caller closes the client.
func Connect(ctx context.Context) (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if err := ping(ctx, cli); err != nil {
		cli.Close()
		return nil, err
	}
	return cli, nil
}

// Engine returns a Docker client (see [Connect]) that answered a Ping with
// a 10 s timeout. When the engine is unreachable it calls tb.Fatalf if the
// environment has CI=true, naming scripts/docker-up.sh, and tb.Skipf
// otherwise. The client is closed by tb.Cleanup.
func Engine(tb testing.TB) *client.Client {
	tb.Helper()
	cli, err := Connect(tb.Context())
	if err != nil {
		unavailable(tb, err)
		return nil // unreachable: unavailable stops the test
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// Images makes sure [BusyboxImage] and [NoShellImage] exist, for tests. It
// handles an unreachable engine like [Engine] (Fatal under CI=true, Skip
// otherwise) and fails the test if a build fails. A nil cli means
// [Engine](tb).
func Images(tb testing.TB, cli *client.Client) {
	tb.Helper()
	if cli == nil {
		cli = Engine(tb)
	}
	if err := ping(tb.Context(), cli); err != nil {
		unavailable(tb, err)
		return
	}
	ctx, cancel := context.WithTimeout(tb.Context(), buildTimeout)
	defer cancel()
	if err := EnsureImages(ctx, cli); err != nil {
		tb.Fatalf("test images (try `make images`): %v", err)
	}
}

// EnsureImages builds [BusyboxImage] and [NoShellImage] unless an image
// with that tag and a matching [ImageLabel] exists already. It builds from
// local files only, with the engine's legacy builder: /bin/busybox for the
// busybox image, and for the no-shell image a static binary that it
// compiles with the go command on PATH. An image that a rebuild replaces
// is removed when nothing uses it. EnsureImages prints nothing; it is safe
// to call concurrently, also from several processes (they take turns
// through a lock file in os.TempDir()).
func EnsureImages(ctx context.Context, cli *client.Client) error {
	unlock, err := lock(ctx)
	if err != nil {
		return fmt.Errorf("test images: %w", err)
	}
	defer unlock()

	for _, r := range []recipe{busyboxRecipe, noshellRecipe} {
		if err := ensure(ctx, cli, r); err != nil {
			return err
		}
	}
	return nil
}

func ping(ctx context.Context, cli *client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		return fmt.Errorf("ping docker engine at %s: %w", cli.DaemonHost(), err)
	}
	return nil
}

func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("docker engine unavailable under CI (%s should have started it): %v", upScript, err)
	}
	tb.Skipf("docker engine unavailable, skipping (start it with `bash %s` or `make engine`): %v", upScript, err)
}

// A recipe says how to build one test image.
type recipe struct {
	// tag is the image's reference.
	tag string
	// dockerfile is the Dockerfile, with one %s for the ImageLabel value.
	dockerfile string
	// inputs returns, cheaply, bytes that identify everything rootfs
	// depends on; their hash (with the Dockerfile's) is the image label.
	inputs func(ctx context.Context) ([]byte, error)
	// rootfs returns the files that the Dockerfile ADDs at / from rootfs.tar.
	rootfs func(ctx context.Context) ([]file, error)
}

// A file is one entry of a rootfs.tar.
type file struct {
	name string
	mode int64 // permission bits, including sticky
	dir  bool
	body []byte
}

var busyboxRecipe = recipe{
	tag: BusyboxImage,
	dockerfile: `FROM scratch
ADD rootfs.tar /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL ` + ImageLabel + `=%s
CMD ["sh"]
`,
	inputs: func(context.Context) ([]byte, error) { return readBusybox() },
	rootfs: busyboxRootfs,
}

var noshellRecipe = recipe{
	tag: NoShellImage,
	dockerfile: `FROM scratch
ADD rootfs.tar /
LABEL ` + ImageLabel + `=%s
CMD ["/app"]
`,
	inputs: noshellInputs,
	rootfs: noshellRootfs,
}

// readBusybox reads /bin/busybox and checks that it is static.
func readBusybox() ([]byte, error) {
	bin, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("read %s (install busybox-static: bash %s): %w", busyboxPath, upScript, err)
	}
	if err := checkStatic(bin); err != nil {
		return nil, fmt.Errorf("%s: %w (install busybox-static: bash %s)", busyboxPath, err, upScript)
	}
	return bin, nil
}

func busyboxRootfs(context.Context) ([]file, error) {
	bin, err := readBusybox()
	if err != nil {
		return nil, err
	}
	return []file{
		{name: "bin", mode: 0o755, dir: true},
		{name: "bin/busybox", mode: 0o755, body: bin},
		{name: "etc", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, body: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{name: "etc/group", mode: 0o644, body: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{name: "root", mode: 0o700, dir: true},
		{name: "tmp", mode: 0o1777, dir: true},
	}, nil
}

// checkStatic reports an error unless bin is an ELF executable without a
// program interpreter: a FROM scratch image has no dynamic loader.
func checkStatic(bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked, need a static binary")
		}
	}
	return nil
}

func noshellRootfs(ctx context.Context) ([]file, error) {
	app, err := buildNoshell(ctx)
	if err != nil {
		return nil, err
	}
	return []file{
		{name: "app", mode: 0o755, body: app},
		{name: "tmp", mode: 0o1777, dir: true},
	}, nil
}

// noshellInputs identifies the noshell binary without building it: a
// -trimpath build without VCS stamping is reproducible, so the source, the
// toolchain version, the target and the flags determine its bytes.
func noshellInputs(ctx context.Context) ([]byte, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("build noshell: go command not found: %w", err)
	}
	cmd := exec.CommandContext(ctx, gobin, "env", "GOVERSION")
	cmd.Dir = os.TempDir() // outside any module, so no toolchain line applies
	cmd.Env = noshellEnv()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("build noshell: go env GOVERSION: %w", err)
	}
	var b bytes.Buffer
	b.Write(noshellSource)
	fmt.Fprintf(&b, "\n%s %s %s %q\n", bytes.TrimSpace(out), runtime.GOARCH, noshellGoMod, noshellFlags())
	return b.Bytes(), nil
}

// noshellEnv is the environment of the noshell build: static, for Linux on
// this machine's architecture, untouched by the caller's GOFLAGS or go.work.
func noshellEnv() []string {
	return append(os.Environ(),
		"CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH,
		"GOFLAGS=", "GOWORK=off", "GO111MODULE=on")
}

const noshellGoMod = "module opensbx-noshell\n\ngo 1.22\n"

// noshellFlags are the build flags of the noshell program.
func noshellFlags() []string { return []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w"} }

// buildNoshell compiles the embedded noshell source as a standalone module
// in a temporary directory, so it works from any working directory. The
// flags make the binary reproducible, which keeps the image's hash stable.
func buildNoshell(ctx context.Context) ([]byte, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("build noshell: go command not found: %w", err)
	}
	dir, err := os.MkdirTemp("", "opensbx-noshell-")
	if err != nil {
		return nil, fmt.Errorf("build noshell: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(noshellGoMod), 0o644); err != nil {
		return nil, fmt.Errorf("build noshell: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), noshellSource, 0o644); err != nil {
		return nil, fmt.Errorf("build noshell: %w", err)
	}
	out := filepath.Join(dir, "app")
	args := append(append([]string{"build"}, noshellFlags()...), "-o", out, ".")
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = dir
	cmd.Env = noshellEnv()
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build noshell: %w\n%s", err, msg)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("build noshell: %w", err)
	}
	return bin, nil
}

// ensure builds r unless its tag already carries the current hash.
func ensure(ctx context.Context, cli *client.Client, r recipe) error {
	inputs, err := r.inputs(ctx)
	if err != nil {
		return fmt.Errorf("image %s: %w", r.tag, err)
	}
	sum := sha256.New()
	sum.Write([]byte(r.dockerfile))
	sum.Write(inputs)
	hash := hex.EncodeToString(sum.Sum(nil))

	old, err := cli.ImageInspect(ctx, r.tag)
	switch {
	case err == nil:
		if label(old) == hash {
			return nil
		}
	case cerrdefs.IsNotFound(err):
	default:
		return fmt.Errorf("inspect image %s: %w", r.tag, err)
	}

	files, err := r.rootfs(ctx)
	if err != nil {
		return fmt.Errorf("image %s: %w", r.tag, err)
	}
	rootfs, err := tarFiles(files)
	if err != nil {
		return fmt.Errorf("image %s: %w", r.tag, err)
	}
	buildCtx, err := tarFiles([]file{
		{name: "Dockerfile", mode: 0o644, body: fmt.Appendf(nil, r.dockerfile, hash)},
		{name: "rootfs.tar", mode: 0o644, body: rootfs},
	})
	if err != nil {
		return fmt.Errorf("image %s: %w", r.tag, err)
	}
	if err := buildImage(ctx, cli, r.tag, buildCtx); err != nil {
		return err
	}

	img, err := cli.ImageInspect(ctx, r.tag)
	if err != nil {
		return fmt.Errorf("inspect image %s after build: %w", r.tag, err)
	}
	if got := label(img); got != hash {
		return fmt.Errorf("image %s after build: label %s=%q, want %q", r.tag, ImageLabel, got, hash)
	}

	// Best effort: drop the image this build replaced if it is one of ours
	// and nothing uses it any more (no Force).
	if old.ID != "" && old.ID != img.ID && label(old) != "" {
		_, _ = cli.ImageRemove(ctx, old.ID, image.RemoveOptions{PruneChildren: true})
	}
	return nil
}

func label(img image.InspectResponse) string {
	if img.Config == nil {
		return ""
	}
	return img.Config.Labels[ImageLabel]
}

// buildImage runs one legacy-builder build and reads its output to the end.
// An error message in the stream becomes the returned error, with the last
// lines of build output for context.
func buildImage(ctx context.Context, cli *client.Client, tag string, buildCtx []byte) error {
	resp, err := cli.ImageBuild(ctx, bytes.NewReader(buildCtx), build.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("build image %s: %w", tag, err)
	}
	defer resp.Body.Close()
	if err := readBuildOutput(resp.Body); err != nil {
		return fmt.Errorf("build image %s: %w", tag, err)
	}
	return nil
}

// buildMessage is the part of a jsonmessage.JSONMessage that a build needs.
type buildMessage struct {
	Stream      string `json:"stream"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

func readBuildOutput(r io.Reader) error {
	const keep = 20
	var tail []string
	dec := json.NewDecoder(r)
	for {
		var m buildMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read build output: %w", err)
		}
		for line := range strings.Lines(m.Stream) {
			if line = strings.TrimRight(line, "\r\n"); line != "" {
				tail = append(tail, line)
			}
		}
		if len(tail) > keep {
			tail = tail[len(tail)-keep:]
		}
		msg := m.Error
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			msg = m.ErrorDetail.Message
		}
		if msg != "" {
			if len(tail) == 0 {
				return errors.New(msg)
			}
			return fmt.Errorf("%s\nbuild output:\n%s", msg, strings.Join(tail, "\n"))
		}
	}
}

// tarFiles writes files into an uncompressed tar owned by root, with fixed
// times so that the same files always give the same bytes.
func tarFiles(files []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, f := range files {
		hdr := &tar.Header{
			Name:    f.name,
			Mode:    f.mode,
			ModTime: epoch,
		}
		if f.dir {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	return buf.Bytes(), nil
}
