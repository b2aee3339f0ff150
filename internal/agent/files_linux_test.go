//go:build linux

package agent_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/agent/server"
)

// weirdNames are literal file names: nothing may interpret them.
var weirdNames = []string{"with space", `"double"`, "'single'", "$(touch pwned)", "semi;colon", "new\nline", "star*", "-dash", "ünï", "back\\slash"}

func readAll(t testing.TB, c *agent.Client, p string, limit int64) ([]byte, agent.FileInfo, error) {
	t.Helper()
	rc, fi, err := c.ReadFile(testCtx(t), p, limit)
	if err != nil {
		return nil, fi, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return b, fi, err
}

func write(t testing.TB, c *agent.Client, p string, data []byte, mode fs.FileMode) error {
	t.Helper()
	_, err := c.WriteFile(testCtx(t), p, bytes.NewReader(data), int64(len(data)), mode)
	return err
}

func TestFileWriteReadStat(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	for _, name := range weirdNames {
		p := filepath.Join(e.dir, "sub dir", name)
		data := []byte("content of " + name)
		is.NoErr(write(t, e.c, p, data, 0)) // write creates parents
		got, fi, err := readAll(t, e.c, p, 0)
		is.NoErr(err)
		is.Equal(string(got), string(data)) // read back
		is.Equal(fi.Name, name)
		is.Equal(fi.Size, int64(len(data)))
		is.Equal(fi.Mode, fs.FileMode(0o644)) // default mode
		disk, err := os.ReadFile(p)
		is.NoErr(err)
		is.Equal(string(disk), string(data)) // exactly that file
	}
	_, err := os.Stat(filepath.Join(e.dir, "sub dir", "pwned"))
	is.True(errors.Is(err, fs.ErrNotExist)) // nothing was run
	st, err := os.Stat(filepath.Join(e.dir, "sub dir"))
	is.NoErr(err)
	is.Equal(st.Mode().Perm(), fs.FileMode(0o755)) // created parents are 0755

	// Binary content of several frames, modes with special bits.
	big := make([]byte, 300_000)
	for i := range big {
		big[i] = byte(i * 7)
	}
	p := filepath.Join(e.dir, "a", "b", "c", "big.bin")
	is.NoErr(write(t, e.c, p, big, 0o755|fs.ModeSetuid))
	got, fi, err := readAll(t, e.c, p, 0)
	is.NoErr(err)
	is.True(bytes.Equal(got, big))
	is.Equal(fi.Mode, 0o755|fs.ModeSetuid) // setuid kept
	is.NoErr(write(t, e.c, p, []byte("short"), 0o600|fs.ModeSticky))
	got, fi, err = readAll(t, e.c, p, 0)
	is.NoErr(err)
	is.Equal(string(got), "short") // replaced, not appended
	is.Equal(fi.Mode, 0o600|fs.ModeSticky)
	if os.Getuid() == 0 {
		st, _ := os.Stat(p)
		is.Equal(st.Sys().(*syscall.Stat_t).Uid, uint32(0)) // owned by root
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	is.Equal(len(entries), 1) // no temporary files left

	// Unknown size.
	n, err := e.c.WriteFile(testCtx(t), p, strings.NewReader("streamed"), -1, 0)
	is.NoErr(err)
	is.Equal(n, int64(8))

	// Stat: files, dirs, links (not followed), missing.
	fi, err = e.c.Stat(testCtx(t), p)
	is.NoErr(err)
	is.Equal(fi.Type, agent.FileInfo{Type: "file"}.Type)
	is.Equal(fi.Size, int64(8))
	is.True(time.Since(fi.ModTime) < time.Hour)
	fi, err = e.c.Stat(testCtx(t), e.dir+"/a/")
	is.NoErr(err)
	is.Equal(fi.Name, "a")
	is.Equal(string(fi.Type), "dir")
	is.Equal(fi.Size, int64(0))
	is.NoErr(os.Symlink("b/c/big.bin", filepath.Join(e.dir, "a", "link")))
	fi, err = e.c.Stat(testCtx(t), filepath.Join(e.dir, "a", "link"))
	is.NoErr(err)
	is.Equal(string(fi.Type), "symlink")
	is.Equal(fi.LinkTarget, "b/c/big.bin")
	is.Equal(fi.Size, int64(len("b/c/big.bin")))
	fi, err = e.c.Stat(testCtx(t), "/")
	is.NoErr(err)
	is.Equal(fi.Name, "/")

	for _, tc := range []struct {
		path string
		want error
	}{
		{filepath.Join(e.dir, "missing"), agent.ErrNotFound},
		{filepath.Join(p, "below-a-file"), agent.ErrNotFound},
		{"relative/path", agent.ErrInvalid},
		{"", agent.ErrInvalid},
		{"/nul\x00byte", agent.ErrInvalid},
	} {
		_, err := e.c.Stat(testCtx(t), tc.path)
		is.True(errors.Is(err, tc.want)) // stat error
	}
}

func TestFileReadErrors(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	p := filepath.Join(e.dir, "f")
	is.NoErr(os.WriteFile(p, []byte("0123456789"), 0o644))
	is.NoErr(os.Symlink(p, filepath.Join(e.dir, "link")))
	is.NoErr(syscall.Mkfifo(filepath.Join(e.dir, "fifo"), 0o644))

	got, fi, err := readAll(t, e.c, filepath.Join(e.dir, "link"), 0)
	is.NoErr(err)
	is.Equal(string(got), "0123456789") // follows links
	is.Equal(fi.Name, "link")
	is.Equal(string(fi.Type), "file")

	_, _, err = readAll(t, e.c, p, 10)
	is.NoErr(err) // at the limit
	_, _, err = e.c.ReadFile(testCtx(t), p, 9)
	is.True(errors.Is(err, agent.ErrTooLarge)) // over it, before any data
	for _, tc := range []struct {
		path string
		want error
	}{
		{e.dir, agent.ErrInvalid},
		{filepath.Join(e.dir, "fifo"), agent.ErrInvalid},
		{filepath.Join(e.dir, "missing"), agent.ErrNotFound},
		{"f", agent.ErrInvalid},
	} {
		_, _, err := e.c.ReadFile(testCtx(t), tc.path, 0)
		is.True(errors.Is(err, tc.want)) // read error
	}

	// A file of the proc file system reports a size of 0: read to its end.
	got, fi, err = readAll(t, e.c, "/proc/self/status", 0)
	is.NoErr(err)
	is.Equal(fi.Size, int64(0))
	is.True(strings.Contains(string(got), "VmRSS:")) // the content, not 0 bytes
	_, _, err = readAll(t, e.c, "/proc/self/status", 10)
	is.True(errors.Is(err, agent.ErrTooLarge)) // over the limit, found while reading
	empty := filepath.Join(e.dir, "empty")
	is.NoErr(os.WriteFile(empty, nil, 0o644))
	got, _, err = readAll(t, e.c, empty, 0)
	is.NoErr(err)
	is.Equal(len(got), 0) // a real empty file

	// Closing a reader early ends the download; the session goes on.
	big := filepath.Join(e.dir, "big")
	is.NoErr(os.WriteFile(big, make([]byte, 4<<20), 0o644))
	rc, _, err := e.c.ReadFile(testCtx(t), big, 0)
	is.NoErr(err)
	buf := make([]byte, 1000)
	_, err = io.ReadFull(rc, buf)
	is.NoErr(err)
	is.NoErr(rc.Close())
	_, err = rc.Read(buf)
	is.True(err != nil) // read after close
	_, err = e.c.Stat(testCtx(t), big)
	is.NoErr(err)

	// A cancelled read fails with the ctx's error.
	ctx, cancel := context.WithCancel(testCtx(t))
	rc, _, err = e.c.ReadFile(ctx, big, 0)
	is.NoErr(err)
	cancel()
	_, err = io.ReadAll(rc)
	is.True(errors.Is(err, context.Canceled))
	rc.Close()
}

func TestFileWriteErrors(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	file := filepath.Join(e.dir, "file")
	is.NoErr(os.WriteFile(file, []byte("old"), 0o644))

	for _, tc := range []struct {
		name string
		path string
		mode fs.FileMode
		want error
	}{
		{"a directory", e.dir, 0, agent.ErrInvalid},
		{"the root", "/", 0, agent.ErrInvalid},
		{"parent is a file", filepath.Join(file, "x"), 0, agent.ErrConflict},
		{"grandparent is a file", filepath.Join(file, "x", "y"), 0, agent.ErrConflict},
		{"relative", "rel/x", 0, agent.ErrInvalid},
		{"bad mode", filepath.Join(e.dir, "m"), fs.ModeDir | 0o755, agent.ErrInvalid},
	} {
		err := write(t, e.c, tc.path, []byte("new"), tc.mode)
		is.True(errors.Is(err, tc.want)) // tc.name
	}

	// Content that does not match the size fails, and the old file stays.
	_, err := e.c.WriteFile(testCtx(t), file, strings.NewReader("toolong"), 3, 0)
	is.True(errors.Is(err, agent.ErrInvalid)) // longer
	_, err = e.c.WriteFile(testCtx(t), file, strings.NewReader("ab"), 3, 0)
	is.True(errors.Is(err, agent.ErrInvalid)) // shorter
	_, err = e.c.WriteFile(testCtx(t), file, nil, -2, 0)
	is.True(errors.Is(err, agent.ErrInvalid)) // bad size
	got, _ := os.ReadFile(file)
	is.Equal(string(got), "old") // untouched

	// A cancelled write leaves the old file as it was.
	ctx, cancel := context.WithCancel(testCtx(t))
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("partial"))
		cancel()
		pw.CloseWithError(errors.New("source ended"))
	}()
	_, err = e.c.WriteFile(ctx, file, pr, -1, 0)
	is.True(err != nil) // cancelled
	got, _ = os.ReadFile(file)
	is.Equal(string(got), "old")
	// A failing source too.
	_, err = e.c.WriteFile(testCtx(t), file, io.MultiReader(strings.NewReader("x"), errReader{}), -1, 0)
	is.True(errors.Is(err, errSource)) // the reader's error
	got, _ = os.ReadFile(file)
	is.Equal(string(got), "old")
	waitFor(t, "temporary files to go", func() bool {
		ents, _ := os.ReadDir(e.dir)
		return len(ents) == 1
	})

	// Through a symbolic link (also a dangling one, and a chain).
	target := filepath.Join(e.dir, "target")
	is.NoErr(os.Symlink("target", filepath.Join(e.dir, "link1")))
	is.NoErr(os.Symlink(filepath.Join(e.dir, "link1"), filepath.Join(e.dir, "link2")))
	is.NoErr(write(t, e.c, filepath.Join(e.dir, "link2"), []byte("through"), 0))
	got, err = os.ReadFile(target)
	is.NoErr(err)
	is.Equal(string(got), "through") // the link's target was written
	fi, err := os.Lstat(filepath.Join(e.dir, "link2"))
	is.NoErr(err)
	is.True(fi.Mode()&fs.ModeSymlink != 0) // the link stays a link
}

var errSource = errors.New("source failed")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errSource }

func TestListDir(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	const n = 1000 // several batches
	var want []string
	for i := range n {
		name := fmt.Sprintf("f%04d", i)
		is.NoErr(os.WriteFile(filepath.Join(e.dir, name), []byte(name), 0o640))
		want = append(want, name)
	}
	for _, name := range weirdNames {
		is.NoErr(os.WriteFile(filepath.Join(e.dir, name), nil, 0o600))
		want = append(want, name)
	}
	is.NoErr(os.Mkdir(filepath.Join(e.dir, "sub"), 0o700))
	is.NoErr(os.Symlink("f0001", filepath.Join(e.dir, "ln")))
	want = append(want, "sub", "ln")
	sort.Strings(want)

	var got []string
	byName := map[string]agent.FileInfo{}
	dir, err := e.c.ListDir(testCtx(t), e.dir, func(fi agent.FileInfo) error {
		got = append(got, fi.Name)
		byName[fi.Name] = fi
		return nil
	})
	is.NoErr(err)
	is.Equal(dir.Name, filepath.Base(e.dir))
	is.Equal(string(dir.Type), "dir")
	sort.Strings(got) // unsorted on the wire
	is.Equal(got, want)
	is.Equal(byName["f0007"].Size, int64(5))
	is.Equal(byName["f0007"].Mode, fs.FileMode(0o640))
	is.Equal(string(byName["sub"].Type), "dir")
	is.Equal(byName["sub"].Mode, fs.ModeDir|0o700)
	is.Equal(byName["ln"].LinkTarget, "f0001")
	is.Equal(string(byName["ln"].Type), "symlink")

	// Through a link to the directory, and stopped early by fn.
	is.NoErr(os.Symlink(e.dir, filepath.Join(t.TempDir(), "dirlink")))
	stop := errors.New("enough")
	count := 0
	_, err = e.c.ListDir(testCtx(t), e.dir, func(agent.FileInfo) error {
		count++
		if count == 10 {
			return stop
		}
		return nil
	})
	is.Equal(err, stop)
	_, err = e.c.ListDir(testCtx(t), filepath.Join(e.dir, "f0001"), func(agent.FileInfo) error { return nil })
	is.True(errors.Is(err, agent.ErrInvalid)) // not a directory
	_, err = e.c.ListDir(testCtx(t), filepath.Join(e.dir, "nope"), func(agent.FileInfo) error { return nil })
	is.True(errors.Is(err, agent.ErrNotFound))
}

func TestRemove(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	ctx := testCtx(t)
	tree := filepath.Join(e.dir, "tree")
	is.NoErr(os.MkdirAll(filepath.Join(tree, "a", "b"), 0o755))
	is.NoErr(os.WriteFile(filepath.Join(tree, "a", "b", "f"), nil, 0o644))
	outside := filepath.Join(e.dir, "outside")
	is.NoErr(os.Mkdir(outside, 0o755))
	is.NoErr(os.WriteFile(filepath.Join(outside, "keep"), nil, 0o644))
	is.NoErr(os.Symlink(outside, filepath.Join(tree, "a", "link-out")))
	is.NoErr(os.Symlink(outside, filepath.Join(e.dir, "toplink")))

	is.NoErr(e.c.Remove(ctx, filepath.Join(e.dir, "toplink"))) // a link
	_, err := os.Stat(filepath.Join(outside, "keep"))
	is.NoErr(err)                   // its target stays
	is.NoErr(e.c.Remove(ctx, tree)) // a tree with a link out of it
	_, err = os.Stat(tree)
	is.True(errors.Is(err, fs.ErrNotExist))
	_, err = os.Stat(filepath.Join(outside, "keep"))
	is.NoErr(err) // not followed
	for _, name := range weirdNames {
		p := filepath.Join(e.dir, name)
		is.NoErr(os.WriteFile(p, nil, 0o644))
		is.NoErr(e.c.Remove(ctx, p))
	}
	is.True(errors.Is(e.c.Remove(ctx, filepath.Join(e.dir, "nope")), agent.ErrNotFound))
	is.True(errors.Is(e.c.Remove(ctx, "/"), agent.ErrInvalid))
	is.True(errors.Is(e.c.Remove(ctx, "/.."), agent.ErrInvalid)) // cleans to "/"
	is.True(errors.Is(e.c.Remove(ctx, "rel"), agent.ErrInvalid))
}

// tarEntry is one entry of a test archive.
type tarEntry struct {
	hdr  tar.Header
	body string
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readTar(t testing.TB, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	var order []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		v := string(h.Typeflag) + ":" + string(b)
		if h.Typeflag == tar.TypeSymlink {
			v = "l:" + h.Linkname
		}
		out[h.Name] = v
		order = append(order, h.Name)
	}
	out["#first"] = order[0]
	return out
}

func TestTarOut(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	d := filepath.Join(e.dir, "d")
	is.NoErr(os.MkdirAll(filepath.Join(d, "sub", "deeper"), 0o755))
	is.NoErr(os.WriteFile(filepath.Join(d, "f"), []byte("file f"), 0o644))
	is.NoErr(os.WriteFile(filepath.Join(d, "sub", "deeper", "g"), bytes.Repeat([]byte("g"), 200_000), 0o600))
	is.NoErr(os.Symlink("/etc/passwd", filepath.Join(d, "ln")))
	is.NoErr(os.WriteFile(filepath.Join(d, "with space"), nil, 0o644))

	rc, fi, err := e.c.TarOut(testCtx(t), d)
	is.NoErr(err)
	is.Equal(string(fi.Type), "dir")
	got := readTar(t, rc)
	is.NoErr(rc.Close())
	is.Equal(got["#first"], "d/") // named after the base name
	is.Equal(got["d/f"], "0:file f")
	is.Equal(got["d/sub/"], "5:")
	is.Equal(got["d/sub/deeper/g"], "0:"+strings.Repeat("g", 200_000))
	is.Equal(got["d/ln"], "l:/etc/passwd") // a link, not followed
	is.Equal(got["d/with space"], "0:")
	is.Equal(len(got), 8)

	rc, fi, err = e.c.TarOut(testCtx(t), filepath.Join(d, "f"))
	is.NoErr(err)
	is.Equal(fi.Size, int64(6))
	got = readTar(t, rc)
	rc.Close()
	is.Equal(got["#first"], "f")
	is.Equal(got["f"], "0:file f")

	_, _, err = e.c.TarOut(testCtx(t), filepath.Join(d, "nope"))
	is.True(errors.Is(err, agent.ErrNotFound))
}

func TestTarIn(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	ctx := testCtx(t)
	dst := filepath.Join(e.dir, "new", "dst")
	archive := makeTar(t,
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o700}},
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "dir/", Mode: 0o750}},
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "dir/file", Mode: 0o640, ModTime: time.Unix(1_000_000_000, 0)}, body: "hello"},
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "implicit/parent/x", Mode: 0o4755}, body: "x"},
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "ln", Linkname: "dir/file"}},
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "hard", Linkname: "dir/file"}},
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "with space $(x)", Mode: 0o644}, body: "w"},
	)
	n, err := e.c.TarIn(ctx, dst, bytes.NewReader(archive))
	is.NoErr(err)
	is.Equal(n, 6) // "./" is skipped
	check := func(rel, want string, mode fs.FileMode) {
		t.Helper()
		p := filepath.Join(dst, rel)
		b, err := os.ReadFile(p)
		is.NoErr(err)
		is.Equal(string(b), want)
		st, err := os.Stat(p)
		is.NoErr(err)
		is.Equal(st.Mode(), mode)
	}
	check("dir/file", "hello", 0o640)
	check("implicit/parent/x", "x", 0o755|fs.ModeSetuid)
	check("ln", "hello", 0o640)
	check("hard", "hello", 0o640)
	check("with space $(x)", "w", 0o644)
	st, _ := os.Stat(filepath.Join(dst, "dir", "file"))
	is.Equal(st.ModTime().Unix(), int64(1_000_000_000)) // mtime from the archive
	st, _ = os.Stat(filepath.Join(dst, "dir"))
	is.Equal(st.Mode(), fs.ModeDir|0o750)
	st, _ = os.Stat(dst)
	is.Equal(st.Mode(), fs.ModeDir|0o755) // "./" did not change the directory
	link, _ := os.Readlink(filepath.Join(dst, "ln"))
	is.Equal(link, "dir/file")

	// Unpacking again replaces what is there.
	_, err = e.c.TarIn(ctx, dst, bytes.NewReader(makeTar(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "dir"}, body: "now a file"})))
	is.NoErr(err)
	check("dir", "now a file", 0o644)

	outside := filepath.Join(e.dir, "outside")
	is.NoErr(os.Mkdir(outside, 0o755))
	is.NoErr(os.Symlink(outside, filepath.Join(dst, "planted"))) // as code in the sandbox could
	for _, tc := range []struct {
		name    string
		archive []byte
	}{
		{"absolute", makeTar(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "/etc/evil"}, body: "x"})},
		{"climbing out", makeTar(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "a/../../evil"}, body: "x"})},
		{"dot dot", makeTar(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "../evil"}, body: "x"})},
		{"char device", makeTar(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}})},
		{"block device", makeTar(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8}})},
		{"fifo", makeTar(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo"}})},
		{"through a link in the archive", makeTar(t,
			tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "esc", Linkname: outside}},
			tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "esc/evil"}, body: "x"})},
		{"through a planted link", makeTar(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "planted/evil"}, body: "x"})},
		{"hard link out", makeTar(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "../outside/keep"}})},
		{"not a tar", bytes.Repeat([]byte("garbage!"), 200)},
	} {
		_, err := e.c.TarIn(ctx, dst, bytes.NewReader(tc.archive))
		is.True(errors.Is(err, agent.ErrInvalid)) // tc.name
	}
	ents, _ := os.ReadDir(outside)
	is.Equal(len(ents), 0) // nothing written outside
	_, err = os.Stat("/etc/evil")
	is.True(errors.Is(err, fs.ErrNotExist))

	file := filepath.Join(e.dir, "afile")
	is.NoErr(os.WriteFile(file, nil, 0o644))
	_, err = e.c.TarIn(ctx, file, bytes.NewReader(archive))
	is.True(errors.Is(err, agent.ErrConflict)) // not a directory
	_, err = e.c.TarIn(ctx, filepath.Join(file, "below"), bytes.NewReader(archive))
	is.True(errors.Is(err, agent.ErrConflict)) // parent not a directory
	_, err = e.c.TarIn(ctx, "rel", bytes.NewReader(archive))
	is.True(errors.Is(err, agent.ErrInvalid))

	// A large archive refused at its first entry does not hang the client.
	huge := io.MultiReader(bytes.NewReader(makeTar(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo"}})), zeros{})
	_, err = e.c.TarIn(ctx, dst, huge)
	is.True(errors.Is(err, agent.ErrInvalid)) // answered early, sending stopped
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
