package tarutil

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/sbxerr"
)

// entry is one member of a test archive.
type entry struct {
	name     string
	typ      byte
	body     string
	linkname string
	mode     int64
}

func archive(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.linkname, Mode: mode, ModTime: time.Unix(1700000000, 0)}
		if e.typ == tar.TypeReg || e.typ == tar.TypeRegA {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("write header %s: %v", e.name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatalf("write body %s: %v", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// members reads an archive into "name|type|linkname|body|mode" strings.
func members(t *testing.T, b []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		body, _ := io.ReadAll(tr)
		out = append(out, strings.Join([]string{hdr.Name, string(hdr.Typeflag), hdr.Linkname, string(body), fs.FileMode(hdr.Mode).String()}, "|"))
	}
}

func TestCleanName(t *testing.T) {
	good := map[string]string{
		"a":                 "a",
		"./a":               "a",
		"a/b/":              "a/b",
		"a/../b":            "b",
		"./":                ".",
		".":                 ".",
		"$(touch /pwned)":   "$(touch /pwned)",
		"with space/x;y":    "with space/x;y",
		"new\nline":         "new\nline",
		"ünïcødé/日本":        "ünïcødé/日本",
		"a/./b//c":          "a/b/c",
		"..a":               "..a",
		"a/..b":             "a/..b",
		"quote'\"`back`":    "quote'\"`back`",
		"dir/sub/../../top": "top",
	}
	for in, want := range good {
		t.Run("good "+in, func(t *testing.T) {
			is := is.New(t)
			got, err := CleanName(in)
			is.NoErr(err)       // a name inside the archive
			is.Equal(got, want) // cleaned name
		})
	}
	for _, in := range []string{"", "/etc/passwd", "/", "..", "../x", "a/../../x", "a/b/../../../c", "nul\x00byte"} {
		t.Run("bad "+in, func(t *testing.T) {
			is := is.New(t)
			_, err := CleanName(in)
			is.True(errors.Is(err, sbxerr.ErrInvalid)) // rejected as invalid input
		})
	}
}

func TestTarMode(t *testing.T) {
	is := is.New(t)
	is.Equal(TarMode(0o644), int64(0o644))
	is.Equal(TarMode(fs.ModeDir|0o755), int64(0o755))                                 // type bits dropped
	is.Equal(TarMode(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky|0o700), int64(0o7700)) // special bits mapped
}

func TestWriteDirsAndFileHeader(t *testing.T) {
	is := is.New(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Unix(1700000000, 0)
	is.NoErr(WriteDirs(tw, "", now))
	is.NoErr(WriteDirs(tw, ".", now))
	is.NoErr(WriteDirs(tw, "a/b c", now))
	is.NoErr(tw.WriteHeader(FileHeader("a/b c/f", 3, 0o600, now)))
	_, err := tw.Write([]byte("xyz"))
	is.NoErr(err)
	is.NoErr(tw.Close())
	is.Equal(members(t, buf.Bytes()), []string{
		"a/|5||" + "|" + (fs.FileMode(0o755)).String(),
		"a/b c/|5||" + "|" + (fs.FileMode(0o755)).String(),
		"a/b c/f|0||xyz|" + (fs.FileMode(0o600)).String(),
	})
}

func TestRebase(t *testing.T) {
	in := archive(t,
		entry{name: "./", typ: tar.TypeDir, mode: 0o700},
		entry{name: "./dir/", typ: tar.TypeDir, mode: 0o750},
		entry{name: "./dir/f", typ: tar.TypeReg, body: "hello", mode: 0o640},
		entry{name: "./dir/link", typ: tar.TypeSymlink, linkname: "../../../etc/passwd"},
		entry{name: "./dir/hard", typ: tar.TypeLink, linkname: "./dir/f"},
		entry{name: "top", typ: tar.TypeRegA, body: "t"},
	)
	t.Run("prefix", func(t *testing.T) {
		is := is.New(t)
		var out bytes.Buffer
		tw := tar.NewWriter(&out)
		n, err := Rebase(tw, bytes.NewReader(in), "x/y")
		is.NoErr(err)
		is.NoErr(tw.Close())
		is.Equal(n, 5) // "./" dropped
		is.Equal(members(t, out.Bytes()), []string{
			"x/y/dir/|5|||" + fs.FileMode(0o750).String(),
			"x/y/dir/f|0||hello|" + fs.FileMode(0o640).String(),
			"x/y/dir/link|2|../../../etc/passwd||" + fs.FileMode(0o644).String(), // symlink target kept as is
			"x/y/dir/hard|1|x/y/dir/f||" + fs.FileMode(0o644).String(),           // hard link target rebased
			"x/y/top|0||t|" + fs.FileMode(0o644).String(),
		})
	})
	t.Run("no prefix", func(t *testing.T) {
		is := is.New(t)
		var out bytes.Buffer
		tw := tar.NewWriter(&out)
		_, err := Rebase(tw, bytes.NewReader(in), "")
		is.NoErr(err)
		is.NoErr(tw.Close())
		is.Equal(members(t, out.Bytes())[0], "dir/|5|||"+fs.FileMode(0o750).String())
	})
	bad := map[string][]byte{
		"absolute":        archive(t, entry{name: "/etc/passwd", typ: tar.TypeReg, body: "x"}),
		"dotdot":          archive(t, entry{name: "a/../../x", typ: tar.TypeReg, body: "x"}),
		"hardlink escape": archive(t, entry{name: "h", typ: tar.TypeLink, linkname: "../etc/shadow"}),
		"hardlink abs":    archive(t, entry{name: "h", typ: tar.TypeLink, linkname: "/etc/shadow"}),
		"device":          archive(t, entry{name: "sda", typ: tar.TypeBlock}),
		"fifo":            archive(t, entry{name: "p", typ: tar.TypeFifo}),
		"empty symlink":   archive(t, entry{name: "l", typ: tar.TypeSymlink}),
		"not a tar":       bytes.Repeat([]byte("garbage!"), 128),
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			tw := tar.NewWriter(io.Discard)
			_, err := Rebase(tw, bytes.NewReader(b), "p")
			is.True(errors.Is(err, sbxerr.ErrInvalid)) // rejected as invalid input
		})
	}
	t.Run("truncated", func(t *testing.T) {
		is := is.New(t)
		b := archive(t, entry{name: "f", typ: tar.TypeReg, body: strings.Repeat("z", 2000)})
		tw := tar.NewWriter(io.Discard)
		_, err := Rebase(tw, bytes.NewReader(b[:1024]), "")
		is.True(err != nil) // a short body is an error, never a short file
	})
}

func TestChildren(t *testing.T) {
	for _, root := range []string{"d/", "./", "/"} {
		t.Run(root, func(t *testing.T) {
			is := is.New(t)
			p := strings.TrimSuffix(root, "/") + "/"
			in := archive(t,
				entry{name: root, typ: tar.TypeDir},
				entry{name: p + "a", typ: tar.TypeReg, body: "12345"},
				entry{name: p + "sub/", typ: tar.TypeDir},
				entry{name: p + "sub/deep", typ: tar.TypeReg, body: "deeper"},
				entry{name: p + "sub/deeper/", typ: tar.TypeDir},
				entry{name: p + "z link", typ: tar.TypeSymlink, linkname: "a"},
				entry{name: p + "hard", typ: tar.TypeLink, linkname: p + "a"},
			)
			hdrs, err := Children(bytes.NewReader(in), 1000)
			is.NoErr(err)
			var got []string
			for _, h := range hdrs {
				got = append(got, h.Name+"|"+string(h.Typeflag)+"|"+h.Linkname)
			}
			is.Equal(got, []string{"a|0|", "sub|5|", "z link|2|a", "hard|1|" + p + "a"}) // depth-1 only, base names
			is.Equal(hdrs[0].Size, int64(5))
		})
	}
	t.Run("not a directory", func(t *testing.T) {
		is := is.New(t)
		_, err := Children(bytes.NewReader(archive(t, entry{name: "f", typ: tar.TypeReg, body: "x"})), 1000)
		is.True(err != nil) // a file is not listed as a directory
	})
	t.Run("empty", func(t *testing.T) {
		is := is.New(t)
		_, err := Children(bytes.NewReader(archive(t)), 1000)
		is.True(err != nil) // an empty archive is an error
	})
}

func TestFirstAndFileMode(t *testing.T) {
	is := is.New(t)
	hdr, body, err := First(bytes.NewReader(archive(t, entry{name: "f", typ: tar.TypeReg, body: "abc", mode: 0o4755})))
	is.NoErr(err)
	b, err := io.ReadAll(body)
	is.NoErr(err)
	is.Equal(string(b), "abc")
	is.Equal(FileMode(hdr), fs.ModeSetuid|0o755)
	is.Equal(FileMode(&tar.Header{Typeflag: tar.TypeLink, Mode: 0o600}), fs.FileMode(0o600)) // hard link reads as a file
	is.Equal(FileMode(&tar.Header{Typeflag: tar.TypeSymlink, Mode: 0o777}), fs.ModeSymlink|0o777)
	_, _, err = First(bytes.NewReader(archive(t)))
	is.True(err != nil) // empty archive
}

func TestChildrenBounded(t *testing.T) {
	var entries []entry
	entries = append(entries, entry{name: "d/", typ: tar.TypeDir})
	for i := 0; i < 11; i++ {
		entries = append(entries, entry{name: fmt.Sprintf("d/f%d", i), typ: tar.TypeReg, body: "x"})
	}
	in := archive(t, entries...)
	if _, err := Children(bytes.NewReader(in), 10); !errors.Is(err, sbxerr.ErrTooLarge) {
		t.Fatalf("11 entries with a maximum of 10: want ErrTooLarge, got %v", err)
	}
	hdrs, err := Children(bytes.NewReader(in), 11)
	if err != nil || len(hdrs) != 11 {
		t.Fatalf("11 entries with a maximum of 11: %d, %v", len(hdrs), err)
	}
}

// FuzzCleanName: an accepted entry name stays inside the target.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"a", "./", "a/../b", "../x", "/abs", "a/../../b", "a\x00b", "", ".", "a//b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := CleanName(s)
		if err != nil {
			return
		}
		if c == ".." || strings.HasPrefix(c, "../") || strings.HasPrefix(c, "/") || strings.IndexByte(c, 0) >= 0 || path.Clean(c) != c {
			t.Fatalf("CleanName(%q) = %q", s, c)
		}
	})
}

// FuzzArchives: whatever tar stream a caller or a sandbox sends, Rebase
// writes only entries below its prefix, and Children and First never
// panic.
func FuzzArchives(f *testing.F) {
	f.Add(archive(f, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/f", typ: tar.TypeReg, body: "x"}))
	f.Add(archive(f, entry{name: "../evil", typ: tar.TypeReg, body: "x"}))
	f.Add(archive(f, entry{name: "l", typ: tar.TypeSymlink, linkname: "/etc/passwd"}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		tw := tar.NewWriter(&out)
		if _, err := Rebase(tw, bytes.NewReader(in), "pre"); err == nil {
			tw.Close()
			tr := tar.NewReader(&out)
			for {
				hdr, err := tr.Next()
				if err != nil {
					break
				}
				if !strings.HasPrefix(hdr.Name, "pre/") {
					t.Fatalf("Rebase wrote %q outside its prefix", hdr.Name)
				}
			}
		}
		Children(bytes.NewReader(in), 1000)
		First(bytes.NewReader(in))
	})
}
