//go:build linux

package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/opensbx/opensbx/internal/agent/wire"
)

// File operations. Paths are absolute and literal: they are cleaned
// (path.Clean) and never interpreted otherwise. Files and directories the
// agent creates are owned by root (the agent's user).

// maxLinkHops bounds the symbolic links a write follows at its path.
const maxLinkHops = 40

// dirMode is the mode of the parent directories a write creates.
const dirMode = 0o755

// listBatch bounds the entries and the encoded bytes of one listing batch.
const (
	listBatchEntries = 256
	listBatchBytes   = 64 << 10
)

// cleanPath validates and cleans a path from the client.
func cleanPath(p string) (string, error) {
	switch {
	case p == "":
		return "", invalid("path is required")
	case strings.IndexByte(p, 0) >= 0:
		return "", invalid("path %q contains a NUL byte", p)
	case !strings.HasPrefix(p, "/"):
		return "", invalid("path %q is relative; give an absolute path", p)
	}
	return path.Clean(p), nil
}

func baseName(p string) string {
	if p == "/" {
		return "/"
	}
	return path.Base(p)
}

// fileErr classifies an error of a file system call on p for the wire.
func fileErr(p string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return notFound("%s: no such file or directory", p)
	case errors.Is(err, syscall.ELOOP):
		return invalid("%s: too many levels of symbolic links", p)
	}
	return err
}

// infoOf describes the entry named name whose lstat is fi; p is its path,
// for reading a link's target.
func infoOf(name, p string, fi fs.FileInfo) wire.FileInfo {
	out := wire.FileInfo{
		Name:    name,
		Type:    wire.TypeOf(fi.Mode()),
		Size:    fi.Size(),
		Mode:    fi.Mode(),
		ModTime: fi.ModTime(),
	}
	switch out.Type {
	case wire.TypeDir:
		out.Size = 0
	case wire.TypeSymlink:
		if t, err := os.Readlink(p); err == nil {
			out.LinkTarget = t
			out.Size = int64(len(t))
		}
	case wire.TypeOther:
		out.Size = 0
	}
	return out
}

func statFile(req wire.PathRequest) (wire.FileInfo, error) {
	p, err := cleanPath(req.Path)
	if err != nil {
		return wire.FileInfo{}, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return wire.FileInfo{}, fileErr(p, err)
	}
	return infoOf(baseName(p), p, fi), nil
}

// readFile answers OpRead: the header, the bytes, the trailer.
func readFile(req wire.ReadRequest, w *wire.Writer) error {
	p, err := cleanPath(req.Path)
	if err != nil {
		return respondErr(w, err)
	}
	if req.Limit < 0 {
		return respondErr(w, invalid("limit %d: want 0 (none) or more", req.Limit))
	}
	st, err := os.Stat(p)
	if err != nil {
		return respondErr(w, fileErr(p, err))
	}
	if err := checkReadable(p, st, req.Limit); err != nil {
		return respondErr(w, err)
	}
	// O_NONBLOCK: a FIFO swapped in after the Stat must not block the open.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return respondErr(w, fileErr(p, err))
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return respondErr(w, err)
	}
	if err := checkReadable(p, st, req.Limit); err != nil {
		return respondErr(w, err)
	}
	info := infoOf(baseName(p), p, st)
	// Files of proc and sys file systems report a size of 0: read those to
	// their end (within the limit). An empty file reads the same either way.
	length := st.Size()
	if length == 0 {
		length = -1
	}
	if err := respond(w, wire.ReadReply{Info: info, Length: length}); err != nil {
		return err
	}
	most := length
	if length < 0 {
		most = req.Limit // 0: no limit
	}
	n, rerr, werr := copyFile(w, f, most, length)
	switch {
	case werr != nil:
		return werr // the stream failed
	case rerr != nil:
		return respondErr(w, fmt.Errorf("read %s: %w", p, rerr))
	case length >= 0 && n != length:
		return respondErr(w, conflict("%s shrank from %d to %d bytes while it was read", p, length, n))
	case length < 0 && most > 0 && n == most:
		var one [1]byte
		if k, _ := f.Read(one[:]); k > 0 {
			return respondErr(w, newError(wire.CodeTooLarge, "%s is over the limit of %d bytes", p, most))
		}
	}
	return respond(w, nil)
}

// copyFile sends f's bytes as data frames until its end, at most most
// bytes when most > 0; length (-1 when unknown) sizes the buffer. It tells
// a failure to read f from a failure to send.
func copyFile(w *wire.Writer, f *os.File, most, length int64) (n int64, readErr, writeErr error) {
	size := int64(wire.MaxData)
	switch {
	case length >= 0 && length < size:
		size = max(length, 1)
	case length < 0:
		size = 8 << 10 // proc and sys files are small
	}
	buf := make([]byte, size)
	for most <= 0 || n < most {
		b := buf
		if most > 0 && most-n < int64(len(b)) {
			b = b[:most-n]
		}
		k, err := f.Read(b)
		if k > 0 {
			if werr := w.Frame(wire.KindData, b[:k]); werr != nil {
				return n, nil, werr
			}
			n += int64(k)
		}
		if errors.Is(err, io.EOF) {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
	return n, nil, nil
}

func checkReadable(p string, st fs.FileInfo, limit int64) error {
	switch {
	case st.IsDir():
		return invalid("%q is a directory, not a file", p)
	case !st.Mode().IsRegular():
		return invalid("%q is not a regular file", p)
	case limit > 0 && st.Size() > limit:
		return newError(wire.CodeTooLarge, "%s is %d bytes, over the limit of %d bytes", p, st.Size(), limit)
	}
	return nil
}

// checkMode validates a mode for a new file and applies the default 0644.
func checkMode(m fs.FileMode) (fs.FileMode, error) {
	if m&^(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
		return 0, invalid("mode %v: only permission, setuid, setgid and sticky bits may be set", m)
	}
	if m == 0 {
		m = 0o644
	}
	return m, nil
}

// writeTarget resolves the file a write at p replaces: p itself, or the
// file a symbolic link at p (and any chain of links) points to.
func writeTarget(p string) (string, error) {
	target := p
	for hops := 0; ; hops++ {
		fi, err := os.Lstat(target)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return target, nil
		case errors.Is(err, syscall.ENOTDIR):
			return "", conflict("a parent of %q is not a directory", p)
		case err != nil:
			return "", err
		case fi.IsDir():
			return "", invalid("%q is a directory, not a file", p)
		case fi.Mode()&fs.ModeSymlink == 0:
			return target, nil
		case hops >= maxLinkHops:
			return "", invalid("%s: too many levels of symbolic links", p)
		}
		t, err := os.Readlink(target)
		if err != nil {
			return "", err
		}
		if !path.IsAbs(t) {
			t = path.Join(path.Dir(target), t)
		}
		target = path.Clean(t)
	}
}

// mkdirs creates dir and its missing parents with mode dirMode. A
// component that is not a directory gives a conflict error.
func mkdirs(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil, errors.Is(err, syscall.ENOTDIR):
		return conflict("%q or a parent of it is not a directory", dir)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if parent := path.Dir(dir); parent != dir {
		if err := mkdirs(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, dirMode); err != nil {
		if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
			return nil // made meanwhile
		}
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTDIR) {
			return conflict("%q or a parent of it is not a directory", dir)
		}
		return err
	}
	return os.Chmod(dir, dirMode) // exact, whatever the umask
}

func randomSuffix() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writeFile answers OpWrite. The content goes to a temporary file next to
// the target, renamed over it once complete, so an aborted write leaves the
// old file as it was. A target that cannot be replaced by a rename (a bind
// mount) is overwritten in place from the temporary file.
func writeFile(req wire.WriteRequest, fr *wire.Reader, w *wire.Writer) error {
	p, err := cleanPath(req.Path)
	if err != nil {
		return respondErr(w, err)
	}
	mode, err := checkMode(req.Mode)
	if err != nil {
		return respondErr(w, err)
	}
	if req.Size < -1 {
		return respondErr(w, invalid("size %d: want -1 (unknown) or more", req.Size))
	}
	if p == "/" {
		return respondErr(w, invalid("%q is a directory, not a file", p))
	}
	target, err := writeTarget(p)
	if err != nil {
		return respondErr(w, err)
	}
	dir := path.Dir(target)
	if err := mkdirs(dir); err != nil {
		return respondErr(w, err)
	}
	tmp := path.Join(dir, ".opensbx-write-"+randomSuffix())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return respondErr(w, fmt.Errorf("create %s: %w", tmp, err))
	}
	committed := false
	defer func() {
		f.Close()
		if !committed {
			os.Remove(tmp)
		}
	}()
	var n int64
	for {
		fm, err := fr.Next()
		if err != nil {
			return fmt.Errorf("write %s aborted: %w", p, err)
		}
		if fm.Kind == wire.KindEnd {
			break
		}
		if fm.Kind != wire.KindData {
			return respondErr(w, invalid("unexpected %c frame in file content", fm.Kind))
		}
		if req.Size >= 0 && n+int64(len(fm.Payload)) > req.Size {
			return respondErr(w, invalid("content is longer than the %d bytes announced", req.Size))
		}
		if _, err := f.Write(fm.Payload); err != nil {
			return respondErr(w, fmt.Errorf("write %s: %w", p, err))
		}
		n += int64(len(fm.Payload))
	}
	if req.Size >= 0 && n != req.Size {
		return respondErr(w, invalid("content ended after %d of %d bytes", n, req.Size))
	}
	if os.Getuid() == 0 { // before Chmod: a chown clears setuid and setgid
		if err := f.Chown(0, 0); err != nil {
			return respondErr(w, err)
		}
	}
	if err := f.Chmod(mode); err != nil {
		return respondErr(w, err)
	}
	if err := f.Close(); err != nil {
		return respondErr(w, fmt.Errorf("write %s: %w", p, err))
	}
	if err := os.Rename(tmp, target); err != nil {
		if !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.EXDEV) {
			return respondErr(w, fileErr(p, err))
		}
		if err := overwrite(tmp, target, mode); err != nil {
			return respondErr(w, fmt.Errorf("write %s: %w", p, err))
		}
	} else {
		committed = true
	}
	return respond(w, wire.WriteReply{Size: n})
}

// overwrite copies src over the existing file dst in place.
func overwrite(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(mode); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// listDir answers OpListDir: the directory's own info, batches of entries
// in directory order (memory stays bounded by a batch), the trailer.
func listDir(ctx context.Context, req wire.PathRequest, w *wire.Writer) error {
	p, err := cleanPath(req.Path)
	if err != nil {
		return respondErr(w, err)
	}
	st, err := os.Stat(p)
	if err != nil {
		return respondErr(w, fileErr(p, err))
	}
	if !st.IsDir() {
		return respondErr(w, invalid("%q is not a directory", p))
	}
	d, err := os.Open(p)
	if err != nil {
		return respondErr(w, fileErr(p, err))
	}
	defer d.Close()
	if err := respond(w, infoOf(baseName(p), p, st)); err != nil {
		return err
	}
	batch := make([]json.RawMessage, 0, listBatchEntries)
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		items, err := json.Marshal(batch)
		if err != nil {
			return err
		}
		batch, size = batch[:0], 0
		return w.JSON(wire.Response{Items: items})
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, rerr := d.ReadDir(listBatchEntries)
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			b, err := json.Marshal(infoOf(e.Name(), path.Join(p, e.Name()), fi))
			if err != nil {
				return err
			}
			if size+len(b) > listBatchBytes {
				if err := flush(); err != nil {
					return err
				}
			}
			batch = append(batch, b)
			size += len(b) + 1
		}
		if err := flush(); err != nil {
			return err
		}
		if errors.Is(rerr, io.EOF) || (rerr == nil && len(ents) == 0) {
			return respond(w, nil)
		}
		if rerr != nil {
			return respondErr(w, fmt.Errorf("read directory %s: %w", p, rerr))
		}
	}
}

// removePath answers OpRemove: the file, link (not its target) or tree.
func removePath(req wire.PathRequest) error {
	p, err := cleanPath(req.Path)
	if err != nil {
		return err
	}
	if p == "/" {
		return invalid("refusing to delete the root directory")
	}
	if _, err := os.Lstat(p); err != nil {
		return fileErr(p, err)
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}
