//go:build linux

package server

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"syscall"
	"time"
	"unsafe"

	"github.com/opensbx/opensbx/internal/agent/wire"
	"github.com/opensbx/opensbx/internal/tarutil"
)

// maxTarTrailer bounds the bytes accepted after the end of an uploaded
// archive (padding to a block size).
const maxTarTrailer = 1 << 20

// tarOut answers OpTarOut: the entry's info, then a tar stream shaped like
// the Engine's archive API: the first entry is named after the base name
// of the path ("d/" for a directory), the rest of a directory's tree below
// it. Symbolic links are archived as links, never followed; sockets are
// skipped. A directory is read in batches, so memory does not grow with its
// size.
func tarOut(req wire.PathRequest, w *wire.Writer) error {
	p, err := cleanPath(req.Path)
	if err != nil {
		return respondErr(w, err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return respondErr(w, fileErr(p, err))
	}
	if err := respond(w, infoOf(baseName(p), p, fi)); err != nil {
		return err
	}
	name := path.Base(p)
	if p == "/" {
		name = "."
	}
	bw := bufio.NewWriterSize(w, wire.MaxData)
	tw := tar.NewWriter(bw)
	t := &tarWalker{tw: tw, buf: make([]byte, 32<<10)}
	werr := t.entry(p, name, fi)
	if werr == nil {
		werr = tw.Close()
	}
	if werr == nil {
		werr = bw.Flush()
	}
	if werr != nil {
		var se *streamError
		if errors.As(werr, &se) {
			return se.err
		}
		return respondErr(w, werr)
	}
	return respond(w, nil)
}

// streamError marks a failure to write to the stream (as opposed to a
// failure to read the file system), which ends the operation without a
// trailer.
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }

type tarWalker struct {
	tw  *tar.Writer
	buf []byte
}

// entry archives the entry at p, whose lstat is fi, as name; a directory
// with everything below it.
func (t *tarWalker) entry(p, name string, fi fs.FileInfo) error {
	if fi.Mode()&fs.ModeSocket != 0 {
		return nil
	}
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(p); err != nil {
			return ignoreGone(err)
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil // a type tar cannot hold
	}
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	hdr.ModTime = fi.ModTime().Truncate(time.Second)
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	hdr.Format = tar.FormatPAX
	switch {
	case fi.Mode().IsRegular():
		return t.file(p, hdr)
	case fi.IsDir():
		if err := t.tw.WriteHeader(hdr); err != nil {
			return &streamError{err}
		}
		return t.dir(p, name)
	default:
		if err := t.tw.WriteHeader(hdr); err != nil {
			return &streamError{err}
		}
		return nil
	}
}

// file archives a regular file. A file that shrinks meanwhile is padded
// with zeros and one that grows is cut, so the archive stays well formed.
func (t *tarWalker) file(p string, hdr *tar.Header) error {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return ignoreGone(err)
	}
	defer f.Close()
	if err := t.tw.WriteHeader(hdr); err != nil {
		return &streamError{err}
	}
	left := hdr.Size
	for left > 0 {
		n, rerr := f.Read(t.buf[:min(int64(len(t.buf)), left)])
		if n > 0 {
			if _, err := t.tw.Write(t.buf[:n]); err != nil {
				return &streamError{err}
			}
			left -= int64(n)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read %s: %w", p, rerr)
		}
	}
	clear(t.buf)
	for left > 0 {
		k := min(int64(len(t.buf)), left)
		if _, err := t.tw.Write(t.buf[:k]); err != nil {
			return &streamError{err}
		}
		left -= k
	}
	return nil
}

// dir archives the entries below directory p, archived as name.
func (t *tarWalker) dir(p, name string) error {
	d, err := os.Open(p)
	if err != nil {
		return ignoreGone(err)
	}
	defer d.Close()
	for {
		ents, rerr := d.ReadDir(listBatchEntries)
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			if err := t.entry(path.Join(p, e.Name()), name+"/"+e.Name(), fi); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) || (rerr == nil && len(ents) == 0) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read directory %s: %w", p, rerr)
		}
	}
}

func ignoreGone(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// tarIn answers OpTarIn: it unpacks the uploaded archive into the
// directory, creating it and its parents first. Entry names must pass
// tarutil.CleanName (relative, not climbing out); regular files,
// directories, symbolic links and hard links are unpacked, other types are
// refused. Everything is unpacked through an os.Root of the directory, so
// no entry and no symbolic link (in the archive or planted in the
// directory) can make the agent write outside it. Files are owned by root.
func tarIn(req wire.PathRequest, fr *wire.Reader, w *wire.Writer) error {
	p, err := cleanPath(req.Path)
	if err != nil {
		return respondErr(w, err)
	}
	if err := mkdirs(p); err != nil {
		return respondErr(w, err)
	}
	root, err := os.OpenRoot(p)
	if err != nil {
		return respondErr(w, fileErr(p, err))
	}
	defer root.Close()
	body := wire.NewBody(fr)
	tr := tar.NewReader(body)
	n := 0
	// Directories and links get their times once everything is unpacked
	// (an entry made in a directory changes the directory's mtime), as tar
	// does; at most maxTimed are remembered.
	type timed struct {
		name string
		link bool
		t    time.Time
	}
	var times []timed
	const maxTimed = 1 << 16
	defer func() {
		for i := len(times) - 1; i >= 0; i-- {
			if times[i].link {
				lutimes(path.Join(root.Name(), times[i].name), times[i].t)
			} else {
				_ = root.Chtimes(times[i].name, times[i].t, times[i].t)
			}
		}
	}()
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) && body.Aborted() {
				return fmt.Errorf("tar upload aborted: %w", err)
			}
			return respondErr(w, invalid("read tar: %v", err))
		}
		done, err := unpack(root, tr, hdr)
		if err != nil {
			if body.Aborted() {
				return fmt.Errorf("tar upload aborted: %w", err)
			}
			return respondErr(w, err)
		}
		if done {
			n++
			if (hdr.Typeflag == tar.TypeDir || hdr.Typeflag == tar.TypeSymlink) && !hdr.ModTime.IsZero() && len(times) < maxTimed {
				name, _ := tarutil.CleanName(hdr.Name)
				times = append(times, timed{name: name, link: hdr.Typeflag == tar.TypeSymlink, t: hdr.ModTime})
			}
		}
	}
	// What follows the archive's end must be padding, then KindEnd.
	if k, err := io.Copy(io.Discard, io.LimitReader(body, maxTarTrailer+1)); err != nil {
		return fmt.Errorf("tar upload aborted: %w", err)
	} else if k > maxTarTrailer {
		return respondErr(w, invalid("more than %d bytes after the end of the archive", maxTarTrailer))
	}
	if tail, _ := body.Tail(); tail.Kind != wire.KindEnd {
		return respondErr(w, invalid("unexpected %c frame after the archive", tail.Kind))
	}
	return respond(w, wire.TarInReply{Entries: n})
}

// unpack writes one archive entry into root; it reports false for an
// entry it skips.
func unpack(root *os.Root, tr *tar.Reader, hdr *tar.Header) (bool, error) {
	name, err := tarutil.CleanName(hdr.Name)
	if err != nil {
		return false, invalid("%v", err)
	}
	if name == "." {
		return false, nil // the directory itself keeps its mode
	}
	return true, unpackEntry(root, tr, hdr, name)
}

func unpackEntry(root *os.Root, tr *tar.Reader, hdr *tar.Header, name string) error {
	mode := fs.FileMode(hdr.Mode & 0o777)
	if hdr.Mode&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if hdr.Mode&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if hdr.Mode&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeLink, tar.TypeSymlink, tar.TypeDir: // the reader turns TypeRegA into TypeReg
	default:
		return invalid("tar entry %q: type %q is not supported (only files, directories and links)", hdr.Name, string(hdr.Typeflag))
	}
	if dir := path.Dir(name); dir != "." {
		if err := rootMkdirs(root, dir); err != nil {
			return err
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		fi, err := root.Lstat(name)
		switch {
		case err == nil && fi.IsDir():
		case err == nil:
			if err := root.RemoveAll(name); err != nil {
				return rootErr(name, err)
			}
			fallthrough
		default:
			if err := root.Mkdir(name, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
				return rootErr(name, err)
			}
		}
		return rootErr(name, root.Chmod(name, mode))
	}
	// Anything else replaces what is at name (a directory with its tree).
	if fi, err := root.Lstat(name); err == nil {
		if fi.IsDir() {
			err = root.RemoveAll(name)
		} else {
			err = root.Remove(name)
		}
		if err != nil {
			return rootErr(name, err)
		}
	}
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return invalid("tar entry %q: symbolic link without a target", hdr.Name)
		}
		return rootErr(name, root.Symlink(hdr.Linkname, name))
	case tar.TypeLink:
		target, err := tarutil.CleanName(hdr.Linkname)
		if err != nil || target == "." {
			return invalid("tar entry %q: hard link target %q is not a file in the archive", hdr.Name, hdr.Linkname)
		}
		return rootErr(name, root.Link(target, name))
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return rootErr(name, err)
	}
	if _, err := io.Copy(f, tr); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if !hdr.ModTime.IsZero() {
		_ = root.Chtimes(name, hdr.ModTime, hdr.ModTime)
	}
	return nil
}

// rootMkdirs creates dir (relative) and its missing parents in root.
func rootMkdirs(root *os.Root, dir string) error {
	fi, err := root.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil, errors.Is(err, syscall.ENOTDIR):
		return conflict("tar entry below %q: %q is not a directory", dir, dir)
	case !errors.Is(err, fs.ErrNotExist):
		return rootErr(dir, err)
	}
	if parent := path.Dir(dir); parent != "." {
		if err := rootMkdirs(root, parent); err != nil {
			return err
		}
	}
	if err := root.Mkdir(dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return rootErr(dir, err)
	}
	return nil
}

// rootErr classifies an error of an os.Root call: a path that would leave
// the root is the archive's fault.
func rootErr(name string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.EXDEV) || isEscape(err) {
		return invalid("tar entry %q: the path leaves the target directory (through a symbolic link)", name)
	}
	return err
}

func isEscape(err error) bool {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error() == "path escapes from parent"
	}
	return false
}

// lutimes sets the times of the link at p itself (utimensat with
// AT_SYMLINK_NOFOLLOW), best effort: a link's time is cosmetic.
func lutimes(p string, t time.Time) {
	const atFDCWD, atSymlinkNofollow = -100, 0x100
	ts := [2]syscall.Timespec{syscall.NsecToTimespec(t.UnixNano()), syscall.NsecToTimespec(t.UnixNano())}
	b, err := syscall.BytePtrFromString(p)
	if err != nil {
		return
	}
	fd := atFDCWD
	syscall.Syscall6(syscall.SYS_UTIMENSAT, uintptr(fd), uintptr(unsafe.Pointer(b)), uintptr(unsafe.Pointer(&ts[0])), atSymlinkNofollow, 0, 0)
}
