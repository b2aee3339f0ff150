package opensbx

import (
	"archive/tar"
	"context"
	"errors"
	"io/fs"
	"path"
	"strings"
	"time"

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

func infoFromStat(p string, st engine.PathStat) FileInfo {
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
	if errors.Is(err, ErrNotFound) {
		return fileNotFound(p)
	}
	if errors.Is(err, ErrConflict) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalid) || ctx.Err() != nil {
		return err
	}
	if parent, ok := m.fileNonDirParent(ctx, id, p); ok {
		return sbxerr.NotFound("no such file or directory: %q (%q is not a directory)", p, parent)
	}
	return m.raced(ctx, id, err)
}

// fileNonDirParent returns the nearest existing parent of p when it is not a
// directory (or a link to one).
func (m *Manager) fileNonDirParent(ctx context.Context, id, p string) (string, bool) {
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		st, err := m.engine.StatPath(ctx, id, d)
		if err != nil {
			continue
		}
		if st.Mode&fs.ModeSymlink != 0 && st.LinkTarget != "" {
			if st, err = m.engine.StatPath(ctx, id, st.LinkTarget); err != nil {
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
func (m *Manager) fileStat(ctx context.Context, id, p string) (engine.PathStat, error) {
	st, err := m.engine.StatPath(ctx, id, p)
	if err != nil {
		return st, m.filePathError(ctx, id, p, err)
	}
	return st, nil
}
