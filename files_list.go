package opensbx

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
	"github.com/opensbx/opensbx/internal/tarutil"
)

// maxListEntries bounds the entries ListDir returns: past it, listing fails
// with ErrTooLarge rather than hold a million-file directory in memory.
const maxListEntries = 100_000

// ListDir lists the directory at path in sandbox sandboxID (following a
// symbolic link at path), sorted by name, without "." and "..". Symbolic
// links are described, not followed. It works on stopped sandboxes and
// images without a shell: the engine sends the directory as a tar stream,
// of which only the headers of the direct children are kept. File bodies
// are skipped, but the engine still sends the whole tree, so listing a
// directory with a large subtree (such as "/") takes time in proportion to
// the tree's size; memory grows only with the number of direct children,
// at most 100,000 (more fail with ErrTooLarge). Errors: ErrInvalid for a
// bad path or a path that is not a directory, ErrNotFound for a missing
// sandbox or path, ErrTooLarge for a directory with too many entries.
func (m *Manager) ListDir(ctx context.Context, sandboxID, path string) ([]FileInfo, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	p, err := cleanFilePath(path)
	if err != nil {
		return nil, fmt.Errorf("list directory: %w", err)
	}
	if id, _, ok := m.liveAgent(ctx, sandboxID); ok {
		entries, err := m.agentList(ctx, id, p)
		if err != nil {
			return nil, fmt.Errorf("list directory %q: %w", p, err)
		}
		return entries, nil
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return nil, fmt.Errorf("list directory: %w", err)
	}
	if m.usesAgent(c) {
		entries, err := m.agentList(ctx, c.ID, p)
		if err != nil {
			return nil, fmt.Errorf("list directory %q: %w", p, err)
		}
		return entries, nil
	}
	target := p
	var rc io.ReadCloser
	for hops := 0; ; hops++ {
		var st engine.PathStat
		rc, st, err = m.engine.CopyFrom(ctx, c.ID, target)
		if err != nil {
			return nil, fmt.Errorf("list directory: %w", m.filePathError(ctx, c.ID, p, err))
		}
		if st.Mode&fs.ModeSymlink != 0 && st.LinkTarget != "" && hops < maxFileLinkHops {
			rc.Close()
			target = st.LinkTarget
			continue
		}
		if !st.Mode.IsDir() {
			rc.Close()
			return nil, fmt.Errorf("list directory: %w", sbxerr.Invalid("%q is not a directory", p))
		}
		break
	}
	hdrs, err := tarutil.Children(rc, maxListEntries)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("list directory %q: %w", p, err)
	}
	out := make([]FileInfo, 0, len(hdrs))
	for _, hdr := range hdrs {
		fi := infoFromHeader(p, hdr)
		if hdr.Typeflag == tar.TypeLink {
			// A second name of a file seen earlier in the archive: the header
			// carries no size, so ask.
			if st, err := m.engine.StatPath(ctx, c.ID, joinFilePath(target, hdr.Name)); err == nil {
				fi.Size, fi.Mode, fi.ModTime = st.Size, st.Mode, st.Mtime
			}
		}
		out = append(out, fi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// FormatListing renders entries as `ls -la`-style text, one line each:
// type and permissions, size, modification time (UTC, "2006-01-02 15:04")
// and name, with " -> target" for symbolic links. Names and targets with
// control characters or invalid UTF-8 are quoted Go-style, so every entry
// stays on one line. No "total" line, "." or ".." is added.
func FormatListing(entries []FileInfo) string {
	width := 1
	for _, e := range entries {
		if n := len(strconv.FormatInt(e.Size, 10)); n > width {
			width = n
		}
	}
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%s %*d %s %s", lsMode(e.Mode), width, e.Size, e.ModTime.UTC().Format("2006-01-02 15:04"), lsName(e.Name))
		if e.Type == FileTypeSymlink {
			b.WriteString(" -> " + lsName(e.LinkTarget))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// lsMode renders a mode the way ls does ("drwxr-xr-x", "lrwxrwxrwx",
// "-rwsr-xr-t").
func lsMode(m fs.FileMode) string {
	var b [10]byte
	switch {
	case m.IsDir():
		b[0] = 'd'
	case m&fs.ModeSymlink != 0:
		b[0] = 'l'
	case m&fs.ModeNamedPipe != 0:
		b[0] = 'p'
	case m&fs.ModeSocket != 0:
		b[0] = 's'
	case m&fs.ModeCharDevice != 0:
		b[0] = 'c'
	case m&fs.ModeDevice != 0:
		b[0] = 'b'
	default:
		b[0] = '-'
	}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if m&(1<<uint(8-i)) != 0 {
			b[i+1] = rwx[i]
		} else {
			b[i+1] = '-'
		}
	}
	special := func(i int, set bool, lower, upper byte) {
		if !set {
			return
		}
		if b[i] == 'x' {
			b[i] = lower
		} else {
			b[i] = upper
		}
	}
	special(3, m&fs.ModeSetuid != 0, 's', 'S')
	special(6, m&fs.ModeSetgid != 0, 's', 'S')
	special(9, m&fs.ModeSticky != 0, 't', 'T')
	return string(b[:])
}

// lsName returns name as is, or Go-quoted when it holds control characters
// or invalid UTF-8.
func lsName(name string) string {
	if !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return strconv.Quote(name)
	}
	return name
}

// fileResolveDir finds where to unpack an archive so that directory p exists
// afterwards: it returns the nearest existing directory at or above p
// (anchor) and the path of p below it (rel, "" when p exists). A symbolic
// link at p or on the way is followed. A non-directory in the way fails
// with ErrConflict.
