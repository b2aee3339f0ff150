package opensbx

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/matryer/is"
	"go.uber.org/goleak"

	"github.com/opensbx/opensbx/internal/testenv"
)

// filesTarEntry is one member of a test archive.
type filesTarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

var filesEpoch = time.Date(2024, 2, 29, 13, 37, 0, 0, time.UTC)

func filesTar(t testing.TB, entries ...filesTarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if e.typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: mode, ModTime: filesEpoch}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %s: %v", e.name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatalf("tar body %s: %v", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// filesNames returns the names of entries.
func filesNames(entries []FileInfo) []string {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Name)
	}
	return out
}

// filesRawNames lists directory dir of container id with the SDK alone
// (depth-1 names from the engine's archive), to check Opensbx against.
func filesRawNames(t testing.TB, cli *client.Client, id, dir string) []string {
	t.Helper()
	rc, _, err := cli.CopyFromContainer(context.Background(), id, dir)
	if err != nil {
		t.Fatalf("raw copy from %s: %v", dir, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	first, err := tr.Next()
	if err != nil {
		t.Fatalf("raw tar of %s: %v", dir, err)
	}
	root := strings.TrimSuffix(first.Name, "/") + "/"
	var names []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("raw tar of %s: %v", dir, err)
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(hdr.Name, root), "/")
		if rel != "" && !strings.Contains(rel, "/") {
			names = append(names, rel)
		}
	}
	slices.Sort(names)
	return names
}

// newNoShell creates a running sandbox of the image without a shell.
func newNoShell(t testing.TB, m *Manager) *Sandbox {
	t.Helper()
	res, err := m.Create(context.Background(), CreateOptions{Image: testenv.NoShellImage, Command: []string{"/app"}})
	if err != nil {
		t.Fatalf("create noshell sandbox: %v", err)
	}
	return res.Sandbox
}

func TestFilesAllByteValues(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, cli := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})

	data := make([]byte, 0, 4*256)
	for range 4 {
		for b := range 256 {
			data = append(data, byte(b))
		}
	}
	data = append(data, "\r\n\x00"...) // ends in a NUL, after CR LF
	is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/bytes.bin", data, 0))
	got, fi, err := m.ReadFile(ctx, sb.ID, "/tmp/bytes.bin")
	is.NoErr(err)
	is.True(bytes.Equal(got, data)) // every byte value back unchanged
	is.Equal(fi.Size, int64(len(data)))
	is.Equal(fi.Type, FileTypeFile)
	is.Equal(fi.Mode, fs.FileMode(0o644)) // default mode
	is.Equal(fi.Name, "bytes.bin")
	is.Equal(fi.Path, "/tmp/bytes.bin")
	is.True(time.Since(fi.ModTime) < time.Hour && time.Until(fi.ModTime) < time.Minute) // a fresh mtime

	// The engine's own archive has the same bytes: nothing was transcoded.
	rc, _, err := cli.CopyFromContainer(ctx, sb.ID, "/tmp/bytes.bin")
	is.NoErr(err)
	tr := tar.NewReader(rc)
	_, err = tr.Next()
	is.NoErr(err)
	raw, err := io.ReadAll(tr)
	rc.Close()
	is.NoErr(err)
	is.True(bytes.Equal(raw, data)) // raw SDK read agrees

	// An empty file, a mode, and overwriting with shorter content.
	is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/empty", nil, 0o600))
	got, fi, err = m.ReadFile(ctx, sb.ID, "/tmp/empty")
	is.NoErr(err)
	is.Equal(len(got), 0)
	is.Equal(fi.Mode, fs.FileMode(0o600)) // mode as asked
	is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/bytes.bin", []byte{0xff}, 0o4755))
	got, fi, err = m.ReadFile(ctx, sb.ID, "/tmp/bytes.bin")
	is.NoErr(err)
	is.Equal(got, []byte{0xff})                         // overwritten, not appended
	is.Equal(fi.Mode, fs.ModeSetuid|fs.FileMode(0o755)) // setuid kept

	// Parents are created.
	is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/a/b/c/d.txt", []byte("deep"), 0))
	fi, err = m.StatFile(ctx, sb.ID, "/tmp/a/b")
	is.NoErr(err)
	is.Equal(fi.Type, FileTypeDir)
	is.Equal(fi.Mode, fs.ModeDir|0o755) // parents get 0755
}

// filesGen is a deterministic, allocation-free stream of n pseudo-random
// bytes (xorshift64).
type filesGen struct {
	state uint64
	n     int64
}

func (g *filesGen) Read(p []byte) (int, error) {
	if g.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	for i := range p {
		g.state ^= g.state << 13
		g.state ^= g.state >> 7
		g.state ^= g.state << 17
		p[i] = byte(g.state >> 32)
	}
	g.n -= int64(len(p))
	return len(p), nil
}

// TestFilesLargeStreamFlatMemory moves 50 MiB each way and checks that the
// process allocated far less than that: the content streams, it is never
// held in memory. It does not run in parallel, so the allocation counter
// sees this test's work only.
func TestFilesLargeStreamFlatMemory(t *testing.T) {
	const size = 50 << 20
	const budget = 16 << 20
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	for _, tc := range []struct {
		name     string
		announce int64
	}{{"known size", size}, {"unknown size spooled to disk", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			ctx := context.Background()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)

			in := sha256.New()
			src := io.TeeReader(&filesGen{state: 0x9e3779b97f4a7c15, n: size}, in)
			is.NoErr(m.WriteFileFrom(ctx, sb.ID, "/tmp/big.bin", src, tc.announce, 0))
			rc, fi, err := m.OpenFile(ctx, sb.ID, "/tmp/big.bin")
			is.NoErr(err)
			is.Equal(fi.Size, int64(size))
			out := sha256.New()
			n, err := io.Copy(out, rc)
			is.NoErr(err)
			is.NoErr(rc.Close())
			is.Equal(n, int64(size))

			runtime.ReadMemStats(&after)
			is.Equal(out.Sum(nil), in.Sum(nil)) // same content both ways
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("allocated %.1f MiB for %d MiB each way (heap in use %.1f -> %.1f MiB)",
				float64(alloc)/(1<<20), size>>20, float64(before.HeapInuse)/(1<<20), float64(after.HeapInuse)/(1<<20))
			is.True(alloc < budget) // memory stays flat: far below the file size
		})
	}
}

func TestFilesTrickyPathsAreLiteral(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, cli := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})

	// Names under /tmp/t; a "/" inside one makes a directory on the way,
	// which is still a literal name ("$(touch " is a directory).
	names := []string{
		"with space",
		`it's "quoted"`,
		"$(touch /pwned)",
		"$(touch pwned)",
		"`touch /pwned`",
		"x; touch /pwned",
		"a && touch pwned",
		"new\nline",
		"tab\there",
		"ünïcødé 日本語 🙂",
		"-rf",
		"*",
		"~",
		"back\\slash",
		"..dots",
		"$HOME",
		"$(touch /pwned) dir/f",
	}
	for _, name := range names {
		is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/t/"+name, []byte(name), 0)) // write literally
	}
	for _, name := range names {
		got, _, err := m.ReadFile(ctx, sb.ID, "/tmp/t/"+name)
		is.NoErr(err)
		is.Equal(string(got), name) // read back under the same name
	}
	var want []string // the entries of /tmp/t
	for _, name := range names {
		top, _, _ := strings.Cut(name, "/")
		if !slices.Contains(want, top) {
			want = append(want, top)
		}
	}
	slices.Sort(want)
	list, err := m.ListDir(ctx, sb.ID, "/tmp/t")
	is.NoErr(err)
	is.Equal(filesNames(list), want)                       // exactly these names, nothing else
	is.Equal(filesRawNames(t, cli, sb.ID, "/tmp/t"), want) // the engine agrees
	listing := FormatListing(list)
	is.Equal(strings.Count(listing, "\n"), len(want)) // one line per entry, even for "new\nline"
	is.True(strings.Contains(listing, `"new\nline"`)) // control characters quoted
	sub, err := m.ListDir(ctx, sb.ID, "/tmp/t/$(touch ")
	is.NoErr(err)
	is.Equal(filesNames(sub), []string{"pwned)", "pwned) dir"})

	noPwned := func() {
		t.Helper()
		for _, p := range []string{"/pwned", "/tmp/pwned", "/tmp/t/pwned"} {
			_, err := m.StatFile(ctx, sb.ID, p)
			is.True(errors.Is(err, ErrNotFound)) // no command ran
		}
		is.True(!slices.Contains(filesRawNames(t, cli, sb.ID, "/"), "pwned"))
	}
	noPwned()

	// Deleting runs rm with the path as one argument: still literal.
	is.NoErr(m.DeleteFile(ctx, sb.ID, "/tmp/t/$(touch /pwned)")) // the file "pwned)" only
	sub, err = m.ListDir(ctx, sb.ID, "/tmp/t/$(touch ")
	is.NoErr(err)
	is.Equal(filesNames(sub), []string{"pwned) dir"})
	for _, name := range want {
		is.NoErr(m.DeleteFile(ctx, sb.ID, "/tmp/t/"+name)) // delete literally
	}
	list, err = m.ListDir(ctx, sb.ID, "/tmp/t")
	is.NoErr(err)
	is.Equal(len(list), 0) // everything deleted, one by one
	noPwned()
	_, err = m.StatFile(ctx, sb.ID, "/tmp")
	is.NoErr(err) // "-rf" and "*" did not take the parent with them
}

func TestFilesNoShellImage(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, _ := newTestManager(t)
	sb := newNoShell(t, m)

	data := []byte("no shell needed\x00\xff")
	is.NoErr(m.WriteFile(ctx, sb.ID, "/work/dir/file.bin", data, 0o640)) // write, creating /work/dir
	got, fi, err := m.ReadFile(ctx, sb.ID, "/work/dir/file.bin")
	is.NoErr(err)
	is.Equal(got, data) // read
	is.Equal(fi.Mode, fs.FileMode(0o640))

	fi, err = m.StatFile(ctx, sb.ID, "/app")
	is.NoErr(err)
	is.Equal(fi.Type, FileTypeFile) // stat
	is.True(fi.Size > 0)
	is.Equal(fi.Mode&0o111, fs.FileMode(0o111))

	list, err := m.ListDir(ctx, sb.ID, "/")
	is.NoErr(err)
	names := filesNames(list)
	is.True(slices.Contains(names, "app"))  // list
	is.True(slices.Contains(names, "work")) // the directory written above
	is.True(slices.Contains(names, "tmp"))

	is.NoErr(m.UploadTar(ctx, sb.ID, "/up", bytes.NewReader(filesTar(t,
		filesTarEntry{name: "x", typ: tar.TypeReg, body: "x!"},
		filesTarEntry{name: "l", typ: tar.TypeSymlink, link: "x"},
	))))
	got, _, err = m.ReadFile(ctx, sb.ID, "/up/l")
	is.NoErr(err)
	is.Equal(string(got), "x!") // tar upload, read through a link

	rc, err := m.DownloadTar(ctx, sb.ID, "/work")
	is.NoErr(err)
	var seen []string
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		is.NoErr(err)
		seen = append(seen, hdr.Name)
	}
	is.NoErr(rc.Close())
	is.Equal(seen, []string{"work/", "work/dir/", "work/dir/file.bin"}) // tar download

	err = m.DeleteFile(ctx, sb.ID, "/work/dir/file.bin")
	if m.cfg.agent {
		is.NoErr(err) // the agent deletes without rm
		_, err = m.StatFile(ctx, sb.ID, "/work/dir/file.bin")
		is.True(errors.Is(err, ErrNotFound)) // gone
		return
	}
	is.True(errors.Is(err, ErrUnsupported)) // no rm in the image
	is.True(strings.Contains(err.Error(), "rm"))
	_, err = m.StatFile(ctx, sb.ID, "/work/dir/file.bin")
	is.NoErr(err) // still there
}

func TestFilesDeleteTree(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})

	is.NoErr(m.UploadTar(ctx, sb.ID, "/data", bytes.NewReader(filesTar(t,
		filesTarEntry{name: "keep", typ: tar.TypeReg, body: "keep me"},
		filesTarEntry{name: "tree/", typ: tar.TypeDir},
		filesTarEntry{name: "tree/a/b/", typ: tar.TypeDir},
		filesTarEntry{name: "tree/a/b/c.txt", typ: tar.TypeReg, body: "c"},
		filesTarEntry{name: "tree/a/readonly", typ: tar.TypeReg, body: "r", mode: 0o400},
		filesTarEntry{name: "tree/link-out", typ: tar.TypeSymlink, link: "../keep"},
		filesTarEntry{name: "link-to-keep", typ: tar.TypeSymlink, link: "keep"},
	))))
	is.NoErr(m.DeleteFile(ctx, sb.ID, "/data/tree")) // recursive
	_, err := m.StatFile(ctx, sb.ID, "/data/tree")
	is.True(errors.Is(err, ErrNotFound)) // tree gone
	got, _, err := m.ReadFile(ctx, sb.ID, "/data/keep")
	is.NoErr(err)
	is.Equal(string(got), "keep me") // a link in the tree did not take its target along

	is.NoErr(m.DeleteFile(ctx, sb.ID, "/data/link-to-keep"))
	_, err = m.StatFile(ctx, sb.ID, "/data/link-to-keep")
	is.True(errors.Is(err, ErrNotFound)) // the link is gone
	_, err = m.StatFile(ctx, sb.ID, "/data/keep")
	is.NoErr(err) // its target is not

	is.NoErr(m.DeleteFile(ctx, sb.ID, "/data/./keep/")) // cleaned path
	list, err := m.ListDir(ctx, sb.ID, "/data")
	is.NoErr(err)
	is.Equal(len(list), 0)

	err = m.DeleteFile(ctx, sb.ID, "/data/keep")
	is.True(errors.Is(err, ErrNotFound)) // deleting twice
	for _, p := range []string{"/", "/..", "//", "/tmp/.."} {
		err = m.DeleteFile(ctx, sb.ID, p)
		is.True(errors.Is(err, ErrInvalid)) // the root is refused
	}
	_, err = m.StatFile(ctx, sb.ID, "/bin/sh")
	is.NoErr(err)
}

func TestFilesListing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})

	is.NoErr(m.UploadTar(ctx, sb.ID, "/l", bytes.NewReader(filesTar(t,
		filesTarEntry{name: "file", typ: tar.TypeReg, body: "12345", mode: 0o600},
		filesTarEntry{name: "dir/", typ: tar.TypeDir, mode: 0o1777},
		filesTarEntry{name: "dir/inner", typ: tar.TypeReg, body: "not listed at depth 1"},
		filesTarEntry{name: "rel", typ: tar.TypeSymlink, link: "file"},
		filesTarEntry{name: "abs", typ: tar.TypeSymlink, link: "/etc/passwd"},
		filesTarEntry{name: "dangling", typ: tar.TypeSymlink, link: "../nowhere"},
		filesTarEntry{name: "hard", typ: tar.TypeLink, link: "file", mode: 0o600}, // the engine applies a hard link mode to the file
		filesTarEntry{name: "todir", typ: tar.TypeSymlink, link: "dir"},
	))))
	list, err := m.ListDir(ctx, sb.ID, "/l")
	is.NoErr(err)
	is.Equal(filesNames(list), []string{"abs", "dangling", "dir", "file", "hard", "rel", "todir"})
	byName := map[string]FileInfo{}
	for _, e := range list {
		byName[e.Name] = e
		is.Equal(e.Path, "/l/"+e.Name)
		is.True(e.ModTime.Equal(filesEpoch)) // mtime from the archive
	}
	want := map[string]struct {
		typ    FileType
		size   int64
		mode   fs.FileMode
		target string
	}{
		"file":     {FileTypeFile, 5, 0o600, ""},
		"hard":     {FileTypeFile, 5, 0o600, ""},
		"dir":      {FileTypeDir, 0, fs.ModeDir | fs.ModeSticky | 0o777, ""},
		"rel":      {FileTypeSymlink, 4, fs.ModeSymlink | 0o777, "file"},
		"abs":      {FileTypeSymlink, 11, fs.ModeSymlink | 0o777, "/etc/passwd"},
		"dangling": {FileTypeSymlink, 10, fs.ModeSymlink | 0o777, "../nowhere"},
		"todir":    {FileTypeSymlink, 3, fs.ModeSymlink | 0o777, "dir"},
	}
	for name, w := range want {
		e := byName[name]
		is.Equal(e.Type, w.typ)          // type
		is.Equal(e.Size, w.size)         // size
		is.Equal(e.Mode, w.mode)         // mode
		is.Equal(e.LinkTarget, w.target) // symlink target as stored
	}

	out := FormatListing(list)
	is.True(strings.Contains(out, "lrwxrwxrwx  4 2024-02-29 13:37 rel -> file\n"))        // ls -la style link
	is.True(strings.Contains(out, "drwxrwxrwt  0 2024-02-29 13:37 dir\n"))                // sticky bit as t
	is.True(strings.Contains(out, "-rw-------  5 2024-02-29 13:37 file\n"))               // plain file
	is.True(strings.Contains(out, "lrwxrwxrwx 11 2024-02-29 13:37 abs -> /etc/passwd\n")) // sizes aligned

	// StatFile agrees with the listing for links; ReadFile and ListDir follow them.
	fi, err := m.StatFile(ctx, sb.ID, "/l/rel")
	is.NoErr(err)
	is.Equal(fi.Type, FileTypeSymlink)
	is.Equal(fi.LinkTarget, "file") // the link's own text, not the resolved path
	got, fi, err := m.ReadFile(ctx, sb.ID, "/l/rel")
	is.NoErr(err)
	is.Equal(string(got), "12345") // read through the link
	is.Equal(fi.Type, FileTypeFile)
	_, _, err = m.ReadFile(ctx, sb.ID, "/l/dangling")
	is.True(errors.Is(err, ErrNotFound)) // a dangling link reads as missing
	inner, err := m.ListDir(ctx, sb.ID, "/l/todir")
	is.NoErr(err)
	is.Equal(filesNames(inner), []string{"inner"}) // listing through a link to a directory

	// Writing through a link writes its target.
	is.NoErr(m.WriteFile(ctx, sb.ID, "/l/rel", []byte("new"), 0))
	got, _, err = m.ReadFile(ctx, sb.ID, "/l/file")
	is.NoErr(err)
	is.Equal(string(got), "new")
	fi, err = m.StatFile(ctx, sb.ID, "/l/rel")
	is.NoErr(err)
	is.Equal(fi.Type, FileTypeSymlink) // still a link
}

func TestFilesStoppedSandbox(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/before", []byte("written while running"), 0))

	_, err := m.Pause(ctx, sb.ID)
	is.NoErr(err)
	got, _, err := m.ReadFile(ctx, sb.ID, "/tmp/before")
	is.NoErr(err)
	is.Equal(string(got), "written while running")                           // read from a paused sandbox
	is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/paused", []byte("p"), 0))         // and write
	is.True(errors.Is(m.DeleteFile(ctx, sb.ID, "/tmp/paused"), ErrConflict)) // rm cannot run while paused
	_, err = m.Resume(ctx, sb.ID)
	is.NoErr(err)

	_, err = m.Stop(ctx, sb.ID)
	is.NoErr(err)

	got, _, err = m.ReadFile(ctx, sb.ID, "/tmp/before")
	is.NoErr(err)
	is.Equal(string(got), "written while running") // read from a stopped sandbox
	fi, err := m.StatFile(ctx, sb.ID, "/tmp/before")
	is.NoErr(err)
	is.Equal(fi.Size, int64(len("written while running")))
	list, err := m.ListDir(ctx, sb.ID, "/tmp")
	is.NoErr(err)
	is.Equal(filesNames(list), []string{"before", "paused"})
	is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/while/stopped", []byte("written while stopped"), 0)) // write too
	rc, err := m.DownloadTar(ctx, sb.ID, "/tmp/while")
	is.NoErr(err)
	_, err = io.Copy(io.Discard, rc)
	is.NoErr(err)
	is.NoErr(rc.Close())

	err = m.DeleteFile(ctx, sb.ID, "/tmp/before")
	is.True(errors.Is(err, ErrConflict)) // rm needs a running sandbox
	err = m.DeleteFile(ctx, sb.ID, "/tmp/missing")
	is.True(errors.Is(err, ErrNotFound)) // missing comes first

	_, err = m.Start(ctx, sb.ID)
	is.NoErr(err)
	got, _, err = m.ReadFile(ctx, sb.ID, "/tmp/while/stopped")
	is.NoErr(err)
	is.Equal(string(got), "written while stopped") // kept across the start
	is.NoErr(m.DeleteFile(ctx, sb.ID, "/tmp/before"))
}

func TestFilesUploadDownloadTar(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})

	archive := filesTar(t,
		filesTarEntry{name: "./", typ: tar.TypeDir, mode: 0o700}, // skipped: dir keeps its mode
		filesTarEntry{name: "./src/", typ: tar.TypeDir},
		filesTarEntry{name: "./src/main.go", typ: tar.TypeReg, body: "package main\n"},
		filesTarEntry{name: "./src/run.sh", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o755},
		filesTarEntry{name: "./README", typ: tar.TypeReg, body: "hi"},
	)
	is.NoErr(m.UploadTar(ctx, sb.ID, "/srv/app", bytes.NewReader(archive))) // creates /srv/app
	fi, err := m.StatFile(ctx, sb.ID, "/srv/app")
	is.NoErr(err)
	is.Equal(fi.Mode, fs.ModeDir|0o755) // "./" did not change it
	got, fi, err := m.ReadFile(ctx, sb.ID, "/srv/app/src/run.sh")
	is.NoErr(err)
	is.Equal(string(got), "#!/bin/sh\n")
	is.Equal(fi.Mode, fs.FileMode(0o755))

	// Upload into an existing directory merges.
	is.NoErr(m.UploadTar(ctx, sb.ID, "/srv/app", bytes.NewReader(filesTar(t,
		filesTarEntry{name: "src/extra.txt", typ: tar.TypeReg, body: "x"},
	))))

	rc, err := m.DownloadTar(ctx, sb.ID, "/srv/app")
	is.NoErr(err)
	bodies := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		is.NoErr(err)
		b, err := io.ReadAll(tr)
		is.NoErr(err)
		bodies[hdr.Name] = string(b)
	}
	is.NoErr(rc.Close())
	is.Equal(bodies, map[string]string{
		"app/": "", "app/README": "hi", "app/src/": "", "app/src/main.go": "package main\n",
		"app/src/run.sh": "#!/bin/sh\n", "app/src/extra.txt": "x",
	}) // the tree comes back whole

	// A downloaded archive uploads elsewhere unchanged.
	rc, err = m.DownloadTar(ctx, sb.ID, "/srv/app/src")
	is.NoErr(err)
	is.NoErr(m.UploadTar(ctx, sb.ID, "/copy", rc))
	is.NoErr(rc.Close())
	got, _, err = m.ReadFile(ctx, sb.ID, "/copy/src/main.go")
	is.NoErr(err)
	is.Equal(string(got), "package main\n")
}

func TestFilesBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, cli := newTestManager(t, WithFileSizeLimit(1<<20))
	sb := newBusybox(t, m, CreateOptions{})
	id := sb.ID
	if err := m.WriteFile(ctx, id, "/tmp/file", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}

	type call func(p string) error
	calls := map[string]call{
		"ReadFile": func(p string) error { _, _, err := m.ReadFile(ctx, id, p); return err },
		"OpenFile": func(p string) error {
			rc, _, err := m.OpenFile(ctx, id, p)
			if err == nil {
				rc.Close()
			}
			return err
		},
		"WriteFile":     func(p string) error { return m.WriteFile(ctx, id, p, []byte("x"), 0) },
		"WriteFileFrom": func(p string) error { return m.WriteFileFrom(ctx, id, p, strings.NewReader("x"), -1, 0) },
		"StatFile":      func(p string) error { _, err := m.StatFile(ctx, id, p); return err },
		"ListDir":       func(p string) error { _, err := m.ListDir(ctx, id, p); return err },
		"DeleteFile":    func(p string) error { return m.DeleteFile(ctx, id, p) },
		"DownloadTar": func(p string) error {
			rc, err := m.DownloadTar(ctx, id, p)
			if err == nil {
				rc.Close()
			}
			return err
		},
		"UploadTar": func(p string) error { return m.UploadTar(ctx, id, p, bytes.NewReader(filesTar(t))) },
	}
	for name, c := range calls {
		t.Run(name+" bad paths", func(t *testing.T) {
			is := is.New(t)
			for _, p := range []string{"", "relative/path", "./x", "~/x", "/tmp/nul\x00byte"} {
				err := c(p)
				is.True(errors.Is(err, ErrInvalid)) // relative, empty or NUL path is invalid input
			}
		})
	}
	for _, name := range []string{"ReadFile", "OpenFile", "StatFile", "ListDir", "DeleteFile", "DownloadTar"} {
		t.Run(name+" missing", func(t *testing.T) {
			is := is.New(t)
			is.True(errors.Is(calls[name]("/tmp/missing"), ErrNotFound))           // missing file
			is.True(errors.Is(calls[name]("/tmp/file/below-a-file"), ErrNotFound)) // a file as a parent
			is.True(errors.Is(calls[name]("/no/such/dir/f"), ErrNotFound))         // missing parents
		})
	}
	t.Run("missing sandbox", func(t *testing.T) {
		is := is.New(t)
		_, _, err := m.ReadFile(ctx, "no-such-sandbox", "/tmp/file")
		is.True(errors.Is(err, ErrNotFound))
		err = m.WriteFile(ctx, "no-such-sandbox", "/tmp/file", nil, 0)
		is.True(errors.Is(err, ErrNotFound))
	})
	t.Run("foreign container", func(t *testing.T) {
		is := is.New(t)
		other, _ := newTestManager(t)
		osb := newBusybox(t, other, CreateOptions{})
		_, _, err := m.ReadFile(ctx, osb.ID, "/etc/passwd")
		is.True(errors.Is(err, ErrNotFound)) // another namespace's sandbox looks missing
	})
	t.Run("directory as a file", func(t *testing.T) {
		is := is.New(t)
		for _, name := range []string{"ReadFile", "OpenFile", "WriteFile", "WriteFileFrom"} {
			is.True(errors.Is(calls[name]("/tmp"), ErrInvalid)) // a directory is not a file
			is.True(errors.Is(calls[name]("/"), ErrInvalid))
		}
		is.True(errors.Is(calls["ListDir"]("/tmp/file"), ErrInvalid)) // a file is not a directory
	})
	t.Run("parent is a file", func(t *testing.T) {
		is := is.New(t)
		is.True(errors.Is(calls["WriteFile"]("/tmp/file/child"), ErrConflict))
		is.True(errors.Is(calls["WriteFile"]("/tmp/file/deeper/child"), ErrConflict))
		is.True(errors.Is(calls["UploadTar"]("/tmp/file"), ErrConflict))
		is.True(errors.Is(calls["UploadTar"]("/tmp/file/sub"), ErrConflict))
	})
	t.Run("bad mode and size", func(t *testing.T) {
		is := is.New(t)
		is.True(errors.Is(m.WriteFile(ctx, id, "/tmp/m", nil, fs.ModeDir|0o755), ErrInvalid))            // type bits
		is.True(errors.Is(m.WriteFileFrom(ctx, id, "/tmp/m", strings.NewReader(""), -2, 0), ErrInvalid)) // size < -1
		err := m.WriteFileFrom(ctx, id, "/tmp/short", strings.NewReader("abc"), 10, 0)
		is.True(errors.Is(err, ErrInvalid)) // content shorter than announced
		err = m.WriteFileFrom(ctx, id, "/tmp/long", strings.NewReader("abcdef"), 3, 0)
		is.True(errors.Is(err, ErrInvalid)) // content longer than announced
	})
	t.Run("too large", func(t *testing.T) {
		is := is.New(t)
		big := make([]byte, 1<<20+1)
		err := m.WriteFile(ctx, id, "/tmp/big", big, 0)
		is.True(errors.Is(err, ErrTooLarge))                                                     // non-streamed write over the limit
		is.NoErr(m.WriteFile(ctx, id, "/tmp/limit", big[:1<<20], 0))                             // at the limit
		is.NoErr(m.WriteFileFrom(ctx, id, "/tmp/big", bytes.NewReader(big), int64(len(big)), 0)) // streaming has no limit
		_, _, err = m.ReadFile(ctx, id, "/tmp/big")
		is.True(errors.Is(err, ErrTooLarge)) // non-streamed read over the limit
		got, _, err := m.ReadFile(ctx, id, "/tmp/limit")
		is.NoErr(err)
		is.Equal(len(got), 1<<20)
		rc, fi, err := m.OpenFile(ctx, id, "/tmp/big")
		is.NoErr(err)
		n, err := io.Copy(io.Discard, rc)
		is.NoErr(err)
		is.NoErr(rc.Close())
		is.Equal(n, fi.Size) // streaming read has no limit
	})
	t.Run("escaping archives", func(t *testing.T) {
		is := is.New(t)
		for name, b := range map[string][]byte{
			"dotdot":   filesTar(t, filesTarEntry{name: "../../escaped", typ: tar.TypeReg, body: "x"}),
			"inner":    filesTar(t, filesTarEntry{name: "a/../../escaped", typ: tar.TypeReg, body: "x"}),
			"absolute": filesTar(t, filesTarEntry{name: "/escaped", typ: tar.TypeReg, body: "x"}),
			"hardlink": filesTar(t, filesTarEntry{name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}),
			"device":   filesTar(t, filesTarEntry{name: "dev", typ: tar.TypeChar}),
		} {
			err := m.UploadTar(ctx, id, "/tmp/up/x", bytes.NewReader(b))
			is.True(errors.Is(err, ErrInvalid)) // rejected
			_ = name
		}
		is.Equal(slices.Contains(filesRawNames(t, cli, id, "/"), "escaped"), false) // nothing escaped to /
		is.Equal(slices.Contains(filesRawNames(t, cli, id, "/tmp"), "escaped"), false)
		_, err := m.StatFile(ctx, id, "/tmp/up/escaped")
		is.True(errors.Is(err, ErrNotFound))
	})
	t.Run("closed manager", func(t *testing.T) {
		is := is.New(t)
		m2, _ := newTestManager(t)
		is.NoErr(m2.Close())
		_, _, err := m2.ReadFile(ctx, id, "/tmp/file")
		is.True(errors.Is(err, ErrClosed))
		is.True(errors.Is(m2.WriteFileFrom(ctx, id, "/tmp/file", strings.NewReader(""), 0, 0), ErrClosed))
		_, err = m2.ListDir(ctx, id, "/tmp")
		is.True(errors.Is(err, ErrClosed))
	})
}

func TestFormatListing(t *testing.T) {
	is := is.New(t)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))
	out := FormatListing([]FileInfo{
		{Name: "bin", Type: FileTypeDir, Mode: fs.ModeDir | 0o755, ModTime: at},
		{Name: "suid", Type: FileTypeFile, Mode: fs.ModeSetuid | fs.ModeSetgid | 0o644, Size: 123456, ModTime: at},
		{Name: "sh", Type: FileTypeSymlink, Mode: fs.ModeSymlink | 0o777, Size: 7, LinkTarget: "busybox", ModTime: at},
		{Name: "fifo", Type: FileTypeOther, Mode: fs.ModeNamedPipe | 0o600, ModTime: at},
		{Name: "bad\xffname", Type: FileTypeFile, Mode: 0o755, ModTime: at},
	})
	is.Equal(out, ""+
		"drwxr-xr-x      0 2025-01-02 02:04 bin\n"+
		"-rwSr-Sr-- 123456 2025-01-02 02:04 suid\n"+
		"lrwxrwxrwx      7 2025-01-02 02:04 sh -> busybox\n"+
		"prw-------      0 2025-01-02 02:04 fifo\n"+
		"-rwxr-xr-x      0 2025-01-02 02:04 \"bad\\xffname\"\n")
	is.Equal(FormatListing(nil), "")
}

func TestCleanFilePath(t *testing.T) {
	is := is.New(t)
	for in, want := range map[string]string{
		"/":                  "/",
		"/a/./b/../c/":       "/a/c",
		"//x//y":             "/x/y",
		"/..":                "/",
		"/tmp/$(touch x); y": "/tmp/$(touch x); y",
		"/a\nb":              "/a\nb",
	} {
		got, err := cleanFilePath(in)
		is.NoErr(err)
		is.Equal(got, want)
	}
	for _, in := range []string{"", "a", "./a", "../a", "\x00", "/a\x00"} {
		_, err := cleanFilePath(in)
		is.True(errors.Is(err, ErrInvalid))
	}
}

// filesFailingReader yields n bytes, then fails with err; with block set it
// instead waits for ctx and fails with ctx's error.
type filesFailingReader struct {
	n     int
	err   error
	block context.Context
}

func (r *filesFailingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		if r.block != nil {
			<-r.block.Done()
			return 0, r.block.Err()
		}
		return 0, r.err
	}
	k := min(len(p), r.n)
	clear(p[:k])
	r.n -= k
	return k, nil
}

// TestFilesStreamsFailCloseAndLeak checks the goroutines and lifetimes of
// streamed transfers: a failing source, a cancelled write, and a download
// open while the Manager closes. Not parallel: it counts goroutines.
func TestFilesStreamsFailCloseAndLeak(t *testing.T) {
	is := is.New(t)
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	ignore := goleak.IgnoreCurrent()
	ctx := context.Background()

	boom := errors.New("boom")
	err := m.WriteFileFrom(ctx, sb.ID, "/tmp/fail", &filesFailingReader{n: 100 << 10, err: boom}, 1<<20, 0)
	is.True(errors.Is(err, boom)) // the source's error comes back
	err = m.WriteFileFrom(ctx, sb.ID, "/tmp/fail-spool", &filesFailingReader{n: 100 << 10, err: boom}, -1, 0)
	is.True(errors.Is(err, boom)) // also while spooling

	cctx, cancel := context.WithCancel(ctx)
	go func() {
		<-time.After(200 * time.Millisecond)
		cancel()
	}()
	err = m.WriteFileFrom(cctx, sb.ID, "/tmp/cancelled", &filesFailingReader{n: 64 << 10, block: cctx}, 1<<20, 0)
	is.True(errors.Is(err, context.Canceled)) // a cancelled write returns

	is.NoErr(m.WriteFileFrom(ctx, sb.ID, "/tmp/big", &filesGen{state: 1, n: 8 << 20}, 8<<20, 0))
	rc, _, err := m.OpenFile(ctx, sb.ID, "/tmp/big")
	is.NoErr(err)
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	io.Copy(io.Discard, rc) // ends with EOF or the cancellation, whichever comes first
	select {
	case err := <-closed:
		t.Fatalf("Manager.Close returned (%v) while a stream was open", err)
	default:
	}
	is.NoErr(rc.Close())
	is.NoErr(<-closed) // Close waits for the open stream, then returns
	_, _, err = m.OpenFile(ctx, sb.ID, "/tmp/big")
	is.True(errors.Is(err, ErrClosed))

	goleak.VerifyNone(t, ignore, goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"), goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"))
}
