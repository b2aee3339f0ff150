package opensbx

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
	"github.com/opensbx/opensbx/internal/tarutil"
)

// File access
//
// Reading, writing, stat, listing and tar transfer go through the Engine's
// archive endpoints (the API behind `docker cp`), never through a shell:
// they work on images without a shell or coreutils, and on stopped
// sandboxes. Paths are always literal: a path with spaces, quotes, `$(...)`,
// `;` or newlines names exactly that file. Deleting is the one operation
// that runs a tool inside the sandbox (`rm -rf -- PATH`, the path a separate
// argument): it needs a running sandbox whose image has rm.
//
// Every path must be absolute; it is cleaned with path.Clean ("/a/./b/../c"
// is "/a/c"). Files written are owned by root (uid and gid 0).

// FileType is the kind of a file system entry.
type FileType string

// File types.
const (
	FileTypeFile    FileType = "file"
	FileTypeDir     FileType = "dir"
	FileTypeSymlink FileType = "symlink"
	// FileTypeOther covers devices, FIFOs and sockets.
	FileTypeOther FileType = "other"
)

// FileInfo describes one file system entry inside a sandbox.
type FileInfo struct {
	// Name is the entry's base name ("/" for the root).
	Name string
	// Path is the absolute, cleaned path the entry was asked for or listed
	// under.
	Path string
	// Type is file, dir, symlink or other.
	Type FileType
	// Size is the length in bytes of a file, the length of the target of a
	// symbolic link, and 0 for directories.
	Size int64
	// Mode holds the permission bits (with setuid, setgid and sticky) and
	// the type bits (fs.ModeDir, fs.ModeSymlink, ...).
	Mode fs.FileMode
	// ModTime is the modification time.
	ModTime time.Time
	// LinkTarget is a symbolic link's target as stored in the link (it may
	// be relative); empty for other types.
	LinkTarget string
}

// maxFileLinkHops bounds how many symbolic links a read follows. The
// engine resolves a link's target fully, so one hop is the normal case.
const maxFileLinkHops = 8

// fileTypeOf returns the FileType of a mode.
func fileTypeOf(mode fs.FileMode) FileType {
	switch {
	case mode.IsRegular():
		return FileTypeFile
	case mode.IsDir():
		return FileTypeDir
	case mode&fs.ModeSymlink != 0:
		return FileTypeSymlink
	}
	return FileTypeOther
}

// cleanFilePath validates and cleans a path given by a caller. It keeps the
// path literal: only "." and ".." elements and repeated or trailing slashes
// are resolved.
func cleanFilePath(p string) (string, error) {
	switch {
	case p == "":
		return "", sbxerr.Invalid("path is required")
	case strings.IndexByte(p, 0) >= 0:
		return "", sbxerr.Invalid("path %q contains a NUL byte", p)
	case !strings.HasPrefix(p, "/"):
		return "", sbxerr.Invalid("path %q is relative; give an absolute path", p)
	}
	return path.Clean(p), nil
}

// joinFilePath is path.Join, for methods whose parameter is named path.
func joinFilePath(dir, name string) string { return path.Join(dir, name) }

// fileBase returns the Name of the entry at a cleaned path.
func fileBase(p string) string {
	if p == "/" {
		return "/"
	}
	return path.Base(p)
}

func infoFromStat(p string, st container.PathStat) FileInfo {
	fi := FileInfo{
		Name:    fileBase(p),
		Path:    p,
		Type:    fileTypeOf(st.Mode),
		Size:    st.Size,
		Mode:    st.Mode,
		ModTime: st.Mtime,
	}
	switch fi.Type {
	case FileTypeDir:
		fi.Size = 0
	case FileTypeSymlink:
		fi.LinkTarget = st.LinkTarget
		fi.Size = int64(len(st.LinkTarget))
	}
	return fi
}

func infoFromHeader(dir string, hdr *tar.Header) FileInfo {
	mode := tarutil.FileMode(hdr)
	fi := FileInfo{
		Name:    hdr.Name,
		Path:    path.Join(dir, hdr.Name),
		Type:    fileTypeOf(mode),
		Mode:    mode,
		ModTime: hdr.ModTime,
	}
	switch fi.Type {
	case FileTypeFile:
		fi.Size = hdr.Size
	case FileTypeSymlink:
		fi.LinkTarget = hdr.Linkname
		fi.Size = int64(len(hdr.Linkname))
	}
	return fi
}

// fileNotFound is the error for a missing path.
func fileNotFound(p string) error {
	return sbxerr.NotFound("no such file or directory: %q", p)
}

// filePathError translates an Engine error about path p in container id. The
// engine answers not-found for a missing path, but a plain server error when
// a parent of the path is not a directory (ENOTDIR); that case is found out
// by looking at the parents and reported as not-found too.
func (m *Manager) filePathError(ctx context.Context, id, p string, err error) error {
	err = engine.Classify(err)
	if errors.Is(err, ErrNotFound) {
		return fileNotFound(p)
	}
	if errors.Is(err, ErrConflict) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalid) || ctx.Err() != nil {
		return err
	}
	if parent, ok := m.fileNonDirParent(ctx, id, p); ok {
		return sbxerr.NotFound("no such file or directory: %q (%q is not a directory)", p, parent)
	}
	return err
}

// fileNonDirParent returns the nearest existing parent of p when it is not a
// directory (or a link to one).
func (m *Manager) fileNonDirParent(ctx context.Context, id, p string) (string, bool) {
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		st, err := m.docker.ContainerStatPath(ctx, id, d)
		if err != nil {
			continue
		}
		if st.Mode&fs.ModeSymlink != 0 && st.LinkTarget != "" {
			if st, err = m.docker.ContainerStatPath(ctx, id, st.LinkTarget); err != nil {
				return d, true // a dangling link
			}
		}
		return d, !st.Mode.IsDir()
	}
	return "", false
}

// fileStat is ContainerStatPath with errors translated. It does not follow
// a symbolic link at p; its LinkTarget is the link's fully resolved
// absolute target.
func (m *Manager) fileStat(ctx context.Context, id, p string) (container.PathStat, error) {
	st, err := m.docker.ContainerStatPath(ctx, id, p)
	if err != nil {
		return st, m.filePathError(ctx, id, p, err)
	}
	return st, nil
}

// StatFile describes the entry at path in sandbox sandboxID without
// following a symbolic link there (its LinkTarget is the link's own text).
// It works on stopped sandboxes and images without a shell. Errors:
// ErrInvalid for a bad path, ErrNotFound for a missing sandbox or path.
func (m *Manager) StatFile(ctx context.Context, sandboxID, path string) (FileInfo, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return FileInfo{}, err
	}
	defer done()
	p, err := cleanFilePath(path)
	if err != nil {
		return FileInfo{}, fmt.Errorf("stat file: %w", err)
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return FileInfo{}, fmt.Errorf("stat file: %w", err)
	}
	st, err := m.fileStat(ctx, c.ID, p)
	if err != nil {
		return FileInfo{}, fmt.Errorf("stat file: %w", err)
	}
	fi := infoFromStat(p, st)
	if fi.Type == FileTypeSymlink {
		// The stat carries the resolved target; the archive's header has the
		// link's own text, which is what ls and ListDir show.
		if target, err := m.fileReadLink(ctx, c.ID, p); err == nil {
			fi.LinkTarget, fi.Size = target, int64(len(target))
		}
	}
	return fi, nil
}

// fileReadLink returns the text of the symbolic link at p.
func (m *Manager) fileReadLink(ctx context.Context, id, p string) (string, error) {
	rc, _, err := m.docker.CopyFromContainer(ctx, id, p)
	if err != nil {
		return "", m.filePathError(ctx, id, p, err)
	}
	defer rc.Close()
	hdr, _, err := tarutil.First(rc)
	if err != nil {
		return "", err
	}
	if hdr.Typeflag != tar.TypeSymlink {
		return "", fmt.Errorf("%q is no longer a symbolic link", p)
	}
	return hdr.Linkname, nil
}

// fileOpen opens the regular file at p (following symbolic links) as the
// first entry of an archive from the engine. limit > 0 makes a file larger
// than limit fail with ErrTooLarge before its body is transferred. The
// caller closes body.
func (m *Manager) fileOpen(ctx context.Context, id, p string, limit int64) (body io.ReadCloser, hdr *tar.Header, entry io.Reader, fi FileInfo, err error) {
	target := p
	for hops := 0; ; hops++ {
		rc, st, err := m.docker.CopyFromContainer(ctx, id, target)
		if err != nil {
			return nil, nil, nil, FileInfo{}, m.filePathError(ctx, id, p, err)
		}
		switch {
		case st.Mode&fs.ModeSymlink != 0:
			rc.Close()
			if hops == maxFileLinkHops || st.LinkTarget == "" {
				return nil, nil, nil, FileInfo{}, sbxerr.Invalid("%q: too many levels of symbolic links", p)
			}
			target = st.LinkTarget
			continue
		case st.Mode.IsDir():
			rc.Close()
			return nil, nil, nil, FileInfo{}, sbxerr.Invalid("%q is a directory, not a file", p)
		case !st.Mode.IsRegular():
			rc.Close()
			return nil, nil, nil, FileInfo{}, sbxerr.Invalid("%q is not a regular file (mode %v)", p, st.Mode)
		case limit > 0 && st.Size > limit:
			rc.Close()
			return nil, nil, nil, FileInfo{}, sbxerr.New(ErrTooLarge, "%q is %d bytes, over the limit of %d bytes; stream it instead", p, st.Size, limit)
		}
		hdr, entry, err := tarutil.First(rc)
		if err != nil {
			rc.Close()
			return nil, nil, nil, FileInfo{}, err
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			rc.Close()
			return nil, nil, nil, FileInfo{}, sbxerr.Conflict("%q changed while it was read", p)
		}
		fi := infoFromStat(p, st)
		fi.Size = hdr.Size
		return rc, hdr, entry, fi, nil
	}
}

// ReadFile returns the contents of the regular file at path in sandbox
// sandboxID, following symbolic links, and a description of it (Name and
// Path are those asked for, the rest describes the file read). It works on
// stopped sandboxes and images without a shell. Errors: ErrInvalid for a bad
// path or a path that is a directory or not a regular file, ErrNotFound for
// a missing sandbox or file, ErrTooLarge for a file over the Manager's file
// size limit (see WithFileSizeLimit; OpenFile has none).
func (m *Manager) ReadFile(ctx context.Context, sandboxID, path string) ([]byte, FileInfo, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, FileInfo{}, err
	}
	defer done()
	p, err := cleanFilePath(path)
	if err != nil {
		return nil, FileInfo{}, fmt.Errorf("read file: %w", err)
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return nil, FileInfo{}, fmt.Errorf("read file: %w", err)
	}
	limit := m.cfg.fileSizeLimit
	body, hdr, entry, fi, err := m.fileOpen(ctx, c.ID, p, limit)
	if err != nil {
		return nil, FileInfo{}, fmt.Errorf("read file: %w", err)
	}
	defer body.Close()
	if hdr.Size > limit {
		return nil, FileInfo{}, fmt.Errorf("read file: %w", sbxerr.New(ErrTooLarge, "%q is %d bytes, over the limit of %d bytes", p, hdr.Size, limit))
	}
	data := make([]byte, hdr.Size)
	if _, err := io.ReadFull(entry, data); err != nil {
		return nil, FileInfo{}, fmt.Errorf("read file %q: %w", p, err)
	}
	return data, fi, nil
}

// OpenFile opens the regular file at path in sandbox sandboxID for
// streaming, following symbolic links; see ReadFile for the FileInfo and
// the errors (there is no size limit). The caller must Close the reader;
// until then the call counts as in flight, so Manager.Close cancels the
// transfer (reads then fail) and waits for the Close. A transfer cut short
// fails with an error rather than a silent short read.
func (m *Manager) OpenFile(ctx context.Context, sandboxID, path string) (io.ReadCloser, FileInfo, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, FileInfo{}, err
	}
	p, err := cleanFilePath(path)
	if err != nil {
		done()
		return nil, FileInfo{}, fmt.Errorf("open file: %w", err)
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		done()
		return nil, FileInfo{}, fmt.Errorf("open file: %w", err)
	}
	body, _, entry, fi, err := m.fileOpen(ctx, c.ID, p, 0)
	if err != nil {
		done()
		return nil, FileInfo{}, fmt.Errorf("open file: %w", err)
	}
	return &fileStream{r: entry, body: body, done: done}, fi, nil
}

// fileStream is a reader over a transfer from the engine that ends the call
// in flight when closed.
type fileStream struct {
	r    io.Reader
	body io.Closer
	done func()
	once sync.Once
	err  error
}

func (s *fileStream) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *fileStream) Close() error {
	s.once.Do(func() {
		s.err = s.body.Close()
		s.done()
	})
	return s.err
}

// DownloadTar returns the tar stream of the file or directory at path in
// sandbox sandboxID, exactly as the engine produces it (like `docker cp
// ID:PATH -`): the first entry is named after path's base name ("d/" for
// /x/d, "/" for the root) and a directory's whole tree follows; a symbolic
// link at path comes as the link itself. It works on stopped sandboxes and
// images without a shell. The caller must Close the stream (see OpenFile on
// Manager.Close). Errors: ErrInvalid for a bad path, ErrNotFound for a
// missing sandbox or path.
func (m *Manager) DownloadTar(ctx context.Context, sandboxID, path string) (io.ReadCloser, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	p, err := cleanFilePath(path)
	if err != nil {
		done()
		return nil, fmt.Errorf("download tar: %w", err)
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		done()
		return nil, fmt.Errorf("download tar: %w", err)
	}
	rc, _, err := m.docker.CopyFromContainer(ctx, c.ID, p)
	if err != nil {
		err = m.filePathError(ctx, c.ID, p, err)
		done()
		return nil, fmt.Errorf("download tar: %w", err)
	}
	return &fileStream{r: rc, body: rc, done: done}, nil
}

// ListDir lists the directory at path in sandbox sandboxID (following a
// symbolic link at path), sorted by name, without "." and "..". Symbolic
// links are described, not followed. It works on stopped sandboxes and
// images without a shell: the engine sends the directory as a tar stream,
// of which only the headers of the direct children are kept. File bodies
// are skipped, but the engine still sends the whole tree, so listing a
// directory with a large subtree (such as "/") takes time in proportion to
// the tree's size; memory stays flat. Errors: ErrInvalid for a bad path or
// a path that is not a directory, ErrNotFound for a missing sandbox or
// path.
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
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return nil, fmt.Errorf("list directory: %w", err)
	}
	target := p
	var rc io.ReadCloser
	for hops := 0; ; hops++ {
		var st container.PathStat
		rc, st, err = m.docker.CopyFromContainer(ctx, c.ID, target)
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
	hdrs, err := tarutil.Children(rc)
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
			if st, err := m.docker.ContainerStatPath(ctx, c.ID, joinFilePath(target, hdr.Name)); err == nil {
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
func (m *Manager) fileResolveDir(ctx context.Context, id, p string) (anchor, rel string, err error) {
	var missing []string
	d := p
	for {
		st, err := m.fileStat(ctx, id, d)
		if err == nil {
			if st.Mode&fs.ModeSymlink != 0 {
				target := st.LinkTarget
				if st, err = m.fileStat(ctx, id, target); errors.Is(err, ErrNotFound) {
					return "", "", sbxerr.Conflict("%q is a symbolic link to %q, which does not exist", d, target)
				} else if err != nil {
					return "", "", err
				}
				d = target
			}
			if !st.Mode.IsDir() {
				return "", "", sbxerr.Conflict("%q is not a directory", d)
			}
			break
		}
		if !errors.Is(err, ErrNotFound) {
			return "", "", err
		}
		if d == "/" {
			return "", "", err // the root always exists; the engine disagrees
		}
		missing = append(missing, path.Base(d))
		d = path.Dir(d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		rel = path.Join(rel, missing[i])
	}
	return d, rel, nil
}

// errEngineStopped fails the writes of an archive that the engine stopped
// reading (it answered early, usually with an error).
var errEngineStopped = errors.New("the engine stopped reading the archive")

// fileCopyTo unpacks the archive that fill writes into directory anchor of
// container id. fill runs in a goroutine that fileCopyTo waits for; its error
// (a bad source) comes first, then the engine's.
func (m *Manager) fileCopyTo(ctx context.Context, id, anchor string, fill func(tw *tar.Writer) error) error {
	pr, pw := io.Pipe()
	fillErr := make(chan error, 1)
	go func() {
		tw := tar.NewWriter(pw)
		err := fill(tw)
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
		fillErr <- err
	}()
	err := m.docker.CopyToContainer(ctx, id, anchor, pr, container.CopyToContainerOptions{AllowOverwriteDirWithFile: false})
	pr.CloseWithError(errEngineStopped)
	if ferr := <-fillErr; ferr != nil && (err == nil || !errors.Is(ferr, errEngineStopped)) {
		return ferr
	}
	if err != nil {
		return m.filePathError(ctx, id, anchor, err)
	}
	return nil
}

// checkWriteMode validates a mode for a new file and applies the default.
// Unix-style special bits (0o4000 setuid, 0o2000 setgid, 0o1000 sticky),
// which fs.FileMode does not use, are accepted as the matching flags.
func checkWriteMode(mode fs.FileMode) (fs.FileMode, error) {
	for bit, flag := range map[fs.FileMode]fs.FileMode{0o4000: fs.ModeSetuid, 0o2000: fs.ModeSetgid, 0o1000: fs.ModeSticky} {
		if mode&bit != 0 {
			mode = mode&^bit | flag
		}
	}
	if mode&^(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
		return 0, sbxerr.Invalid("mode %v: only permission, setuid, setgid and sticky bits may be set", mode)
	}
	if mode == 0 {
		mode = 0o644
	}
	return mode, nil
}

// fileWritePlan says where a file write unpacks its archive: into
// directory anchor, with the missing directories rel ("" for none) and the
// file's name below it.
type fileWritePlan struct {
	anchor, rel, name string
}

// filePlanWrite checks that the file at p of container id can be written
// and plans the archive. A symbolic link at p is written through.
func (m *Manager) filePlanWrite(ctx context.Context, id, p string) (fileWritePlan, error) {
	target := p
	exists := false
	st, err := m.fileStat(ctx, id, p)
	switch {
	case err == nil:
		if st.Mode&fs.ModeSymlink != 0 && st.LinkTarget != "" {
			target = st.LinkTarget // write through the link, like os.WriteFile
			st, err = m.fileStat(ctx, id, target)
		}
		if err == nil && st.Mode.IsDir() {
			return fileWritePlan{}, sbxerr.Invalid("%q is a directory, not a file", p)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fileWritePlan{}, err
		}
		exists = err == nil
	case errors.Is(err, ErrNotFound):
	default:
		return fileWritePlan{}, err
	}
	if target == "/" {
		return fileWritePlan{}, sbxerr.Invalid("%q is a directory, not a file", p)
	}
	// An existing file's parent is an existing directory: no need to look.
	plan := fileWritePlan{anchor: path.Dir(target), name: path.Base(target)}
	if !exists {
		if plan.anchor, plan.rel, err = m.fileResolveDir(ctx, id, plan.anchor); err != nil {
			return fileWritePlan{}, err
		}
	}
	return plan, nil
}

// fileWrite writes size bytes from src as planned.
func (m *Manager) fileWrite(ctx context.Context, id string, plan fileWritePlan, src io.Reader, size int64, mode fs.FileMode) error {
	now := time.Now()
	return m.fileCopyTo(ctx, id, plan.anchor, func(tw *tar.Writer) error {
		if err := tarutil.WriteDirs(tw, plan.rel, now); err != nil {
			return err
		}
		if err := tw.WriteHeader(tarutil.FileHeader(path.Join(plan.rel, plan.name), size, mode, now)); err != nil {
			return err
		}
		n, err := io.CopyN(tw, src, size)
		if errors.Is(err, io.EOF) {
			return sbxerr.Invalid("content ended after %d of %d bytes", n, size)
		}
		if err != nil {
			return fmt.Errorf("read content: %w", err)
		}
		var one [1]byte
		if k, _ := io.ReadFull(src, one[:]); k > 0 {
			return sbxerr.Invalid("content is longer than the %d bytes announced", size)
		}
		return nil
	})
}

// WriteFile writes data to the file at path in sandbox sandboxID, replacing
// it if it exists (through a symbolic link at path) and creating missing
// parent directories (mode 0755). mode holds permission bits, optionally
// fs.ModeSetuid, fs.ModeSetgid and fs.ModeSticky (or Unix-style 0o4000,
// 0o2000, 0o1000); 0 means 0644. The file is owned by root. It
// works on stopped sandboxes and images without a shell. Errors: ErrInvalid
// for a bad path or mode or a path that is a directory, ErrConflict when a
// parent is not a directory, ErrNotFound for a missing sandbox, ErrTooLarge
// when data is over the Manager's file size limit (WriteFileFrom has none).
// A write that fails part-way may leave a partial file.
func (m *Manager) WriteFile(ctx context.Context, sandboxID, path string, data []byte, mode fs.FileMode) error {
	if int64(len(data)) > m.cfg.fileSizeLimit {
		return fmt.Errorf("write file: %w", sbxerr.New(ErrTooLarge, "content is %d bytes, over the limit of %d bytes; stream it instead", len(data), m.cfg.fileSizeLimit))
	}
	return m.WriteFileFrom(ctx, sandboxID, path, bytes.NewReader(data), int64(len(data)), mode)
}

// WriteFileFrom is WriteFile streaming from r, without a size limit. size is
// the number of bytes r yields; r yielding fewer or more fails with
// ErrInvalid (after a partial write). A size of -1 means unknown: r is then
// first spooled to a temporary file on the host's disk (os.TempDir), never
// to memory. WriteFileFrom returns only after its last Read of r returned;
// it does not close r.
func (m *Manager) WriteFileFrom(ctx context.Context, sandboxID, path string, r io.Reader, size int64, mode fs.FileMode) error {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	p, err := cleanFilePath(path)
	if err != nil {
		return fmt.Errorf("write file: %w", err)
	}
	if mode, err = checkWriteMode(mode); err != nil {
		return fmt.Errorf("write file: %w", err)
	}
	if size < -1 {
		return fmt.Errorf("write file: %w", sbxerr.Invalid("size %d: want -1 (unknown) or more", size))
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return fmt.Errorf("write file: %w", err)
	}
	plan, err := m.filePlanWrite(ctx, c.ID, p)
	if err != nil {
		return fmt.Errorf("write file %q: %w", p, err)
	}
	if size == -1 {
		spool, n, err := fileSpool(ctx, r)
		if err != nil {
			return fmt.Errorf("write file: %w", err)
		}
		defer func() {
			spool.Close()
			os.Remove(spool.Name())
		}()
		r, size = spool, n
	}
	if err := m.fileWrite(ctx, c.ID, plan, r, size, mode); err != nil {
		return fmt.Errorf("write file %q: %w", p, err)
	}
	return nil
}

// fileSpool copies r to a new temporary file and returns it rewound, with
// its size. The caller closes and removes the file.
func fileSpool(ctx context.Context, r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp("", "opensbx-upload-*")
	if err != nil {
		return nil, 0, fmt.Errorf("spool content: %w", err)
	}
	fail := func(err error) (*os.File, int64, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	n, err := io.Copy(f, fileCtxReader{ctx: ctx, r: r})
	if err != nil {
		return fail(fmt.Errorf("spool content: %w", err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(fmt.Errorf("spool content: %w", err))
	}
	return f, n, nil
}

// fileCtxReader stops reading once ctx is done.
type fileCtxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c fileCtxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// UploadTar unpacks the tar stream r into directory dir of sandbox
// sandboxID, creating dir and its missing parents (mode 0755) first.
// Entry names must be relative and stay inside dir: an absolute name or one
// that climbs out with ".." fails with ErrInvalid, as do device nodes and
// FIFOs; entries named "." are skipped (dir keeps its mode). Regular files,
// directories, symbolic links (targets kept as they are) and hard links are
// unpacked; everything is owned by root. It works on stopped sandboxes and
// images without a shell. Errors: ErrInvalid for a bad path or archive,
// ErrConflict when dir or a parent is not a directory, ErrNotFound for a
// missing sandbox. An archive rejected part-way may leave the entries before
// the bad one unpacked. It does not close r.
func (m *Manager) UploadTar(ctx context.Context, sandboxID, dir string, r io.Reader) error {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	p, err := cleanFilePath(dir)
	if err != nil {
		return fmt.Errorf("upload tar: %w", err)
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return fmt.Errorf("upload tar: %w", err)
	}
	anchor, rel, err := m.fileResolveDir(ctx, c.ID, p)
	if err != nil {
		return fmt.Errorf("upload tar to %q: %w", p, err)
	}
	now := time.Now()
	err = m.fileCopyTo(ctx, c.ID, anchor, func(tw *tar.Writer) error {
		if err := tarutil.WriteDirs(tw, rel, now); err != nil {
			return err
		}
		_, err := tarutil.Rebase(tw, r, rel)
		return err
	})
	if err != nil {
		return fmt.Errorf("upload tar to %q: %w", p, err)
	}
	return nil
}

// DeleteFile removes the file, link or directory tree at path in sandbox
// sandboxID (a link is removed, not its target). It runs `rm -rf -- PATH`
// as root inside the sandbox, with the path as its own argument, so it
// needs a running sandbox and an image that has rm. Errors: ErrInvalid for a
// bad path or "/", ErrNotFound for a missing sandbox or path, ErrConflict
// for a sandbox that is not running (start it first), ErrUnsupported when
// the image has no rm; a failing rm gives an error with its output.
func (m *Manager) DeleteFile(ctx context.Context, sandboxID, path string) error {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	p, err := cleanFilePath(path)
	if err != nil {
		return fmt.Errorf("delete file: %w", err)
	}
	if p == "/" {
		return fmt.Errorf("delete file: %w", sbxerr.Invalid("refusing to delete the root directory"))
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return fmt.Errorf("delete file: %w", err)
	}
	if _, err := m.fileStat(ctx, c.ID, p); err != nil {
		return fmt.Errorf("delete file: %w", err)
	}
	if st := m.stateOfInspect(c); st != StateRunning {
		return fmt.Errorf("delete file: %w", sbxerr.Conflict("sandbox is %s; deleting runs rm inside it, which needs a running sandbox", st))
	}
	res, err := m.fileExec(ctx, c.ID, []string{"rm", "-rf", "--", p})
	if err != nil {
		return fmt.Errorf("delete file %q: %w", p, err)
	}
	switch {
	case res.missingTool():
		return fmt.Errorf("delete file %q: %w", p, sbxerr.New(ErrUnsupported, "the sandbox's image has no rm, which deleting files needs (%s)", res.output()))
	case res.exitCode != 0:
		return fmt.Errorf("delete file %q: rm exited with %d: %s", p, res.exitCode, res.output())
	}
	return nil
}

// fileExecResult is the outcome of a tool run by fileExec.
type fileExecResult struct {
	exitCode int
	out      fileCapBuffer // stdout and stderr together
}

// missingTool reports whether the engine could not start the tool: runc
// exits 126 (cannot execute) or 127 (not found) for it, with a message.
func (r *fileExecResult) missingTool() bool {
	return r.exitCode == 126 || r.exitCode == 127
}

func (r *fileExecResult) output() string {
	s := strings.TrimSpace(string(r.out.buf))
	if s == "" {
		return "no output"
	}
	return s
}

// fileExecOutputLimit bounds the output fileExec keeps.
const fileExecOutputLimit = 4 << 10

// fileCapBuffer keeps the first fileExecOutputLimit bytes written to it and
// drops the rest.
type fileCapBuffer struct{ buf []byte }

func (b *fileCapBuffer) Write(p []byte) (int, error) {
	if room := fileExecOutputLimit - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// fileExec runs argv as root in running container id, without a shell or a
// TTY, waits for it to end and returns its exit code and (capped) output.
// A cancelled ctx ends the wait; the tool itself is not killed (the Engine
// API cannot), but rm ends by itself.
func (m *Manager) fileExec(ctx context.Context, id string, argv []string) (*fileExecResult, error) {
	created, err := m.docker.ContainerExecCreate(ctx, id, container.ExecOptions{
		Cmd:          argv,
		User:         "0",
		AttachStdout: true,
		AttachStderr: true,
	})
	if err != nil {
		return nil, fmt.Errorf("exec: %w", engine.Classify(err))
	}
	hj, err := m.docker.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return nil, fmt.Errorf("exec: %w", engine.Classify(err))
	}
	stop := context.AfterFunc(ctx, hj.Close)
	res := &fileExecResult{}
	_, copyErr := stdcopy.StdCopy(&res.out, &res.out, hj.Reader)
	stop()
	hj.Close()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	if copyErr != nil {
		return nil, fmt.Errorf("exec output: %w", copyErr)
	}
	// The stream ended; the exit code may lag behind it briefly.
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		ins, err := m.docker.ContainerExecInspect(ctx, created.ID)
		if err != nil {
			return nil, fmt.Errorf("exec: %w", engine.Classify(err))
		}
		if !ins.Running {
			res.exitCode = ins.ExitCode
			return res, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("exec: %w", ctx.Err())
		case <-time.After(delay):
		}
	}
}
