// Package tarutil holds the tar helpers behind Opensbx's file access: the
// Docker Engine moves files in and out of containers only as tar streams.
//
// Everything here streams: nothing reads a whole archive or file body into
// memory. Names in archives use forward slashes and are relative; CleanName
// is the one place that decides whether an entry name is acceptable.
package tarutil

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/opensbx/opensbx/internal/sbxerr"
)

// DirMode is the permission of the parent directories WriteDirs creates.
const DirMode = 0o755

// CleanName returns the cleaned, relative form of an archive entry name, or
// an error matching sbxerr.ErrInvalid when the name is empty, absolute,
// contains a NUL byte, or leaves the archive's root ("..", "a/../../b").
// A name that cleans to "." (the root itself, as in "./") is returned as ".".
func CleanName(name string) (string, error) {
	if name == "" {
		return "", sbxerr.Invalid("tar entry with an empty name")
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", sbxerr.Invalid("tar entry name %q contains a NUL byte", name)
	}
	if strings.HasPrefix(name, "/") {
		return "", sbxerr.Invalid("tar entry %q: absolute names are not allowed", name)
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", sbxerr.Invalid("tar entry %q leaves the target directory", name)
	}
	return c, nil
}

// TarMode converts a fs.FileMode's permission, setuid, setgid and sticky
// bits into the mode field of a tar header. Type bits are dropped.
func TarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// FileHeader returns the header of a regular file entry owned by root.
func FileHeader(name string, size int64, mode fs.FileMode, mtime time.Time) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     TarMode(mode),
		ModTime:  mtime,
		Format:   tar.FormatPAX,
	}
}

// WriteDirs writes a directory entry (mode DirMode, owned by root) for every
// directory on the way to rel, outermost first: "a/b" gives "a/" and "a/b/".
// An empty rel or "." writes nothing.
func WriteDirs(tw *tar.Writer, rel string, mtime time.Time) error {
	if rel == "" || rel == "." {
		return nil
	}
	parts := strings.Split(rel, "/")
	for i := range parts {
		name := strings.Join(parts[:i+1], "/") + "/"
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: DirMode, ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar directory %s: %w", name, err)
		}
	}
	return nil
}

// Rebase copies the archive read from r into tw with every entry name (and
// hard-link target) put under prefix, which is a cleaned relative name or
// "" for none. Every name must pass CleanName; entries that clean to "."
// are dropped, so an archive made with `tar -C dir .` does not change the
// mode of the directory it is unpacked into. Regular files, directories,
// symbolic links (whose targets are kept as they are) and hard links are
// accepted; device nodes, FIFOs and other types fail with an error matching
// sbxerr.ErrInvalid. Ownership, extended attributes and PAX records are not
// carried over. Rebase does not close tw. It reports the number of entries
// copied.
func Rebase(tw *tar.Writer, r io.Reader, prefix string) (int, error) {
	tr := tar.NewReader(r)
	n := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, sbxerr.Wrap(sbxerr.ErrInvalid, fmt.Errorf("read tar: %w", err))
		}
		name, err := CleanName(hdr.Name)
		if err != nil {
			return n, err
		}
		if name == "." {
			continue
		}
		out := &tar.Header{
			Name:    path.Join(prefix, name),
			Mode:    hdr.Mode & 0o7777,
			ModTime: hdr.ModTime,
			Format:  tar.FormatPAX,
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			out.Typeflag = tar.TypeReg
			out.Size = hdr.Size
		case tar.TypeDir:
			out.Typeflag = tar.TypeDir
			out.Name += "/"
		case tar.TypeSymlink:
			out.Typeflag = tar.TypeSymlink
			if hdr.Linkname == "" {
				return n, sbxerr.Invalid("tar entry %q: symbolic link without a target", hdr.Name)
			}
			out.Linkname = hdr.Linkname
		case tar.TypeLink:
			target, err := CleanName(hdr.Linkname)
			if err != nil || target == "." {
				return n, sbxerr.Invalid("tar entry %q: hard link target %q is not a file in the archive", hdr.Name, hdr.Linkname)
			}
			out.Typeflag = tar.TypeLink
			out.Linkname = path.Join(prefix, target)
		default:
			return n, sbxerr.Invalid("tar entry %q: type %q is not supported (only files, directories and links)", hdr.Name, string(hdr.Typeflag))
		}
		if err := tw.WriteHeader(out); err != nil {
			return n, fmt.Errorf("tar %s: %w", out.Name, err)
		}
		if out.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return n, fmt.Errorf("tar %s: %w", out.Name, err)
			}
		}
		n++
	}
}

// Children reads an archive of one directory as the Engine produces it (a
// first entry for the directory itself, "d/" or "/", then its whole tree)
// and returns the headers of the directory's direct children, in archive
// order, with Name reduced to the child's base name (no trailing slash).
// File bodies and deeper entries are skipped but still read from r: the
// cost of listing a directory grows with the size of its whole tree. Only
// what a listing needs is kept of each header (no PAX records or extended
// attributes), and a directory with more than max direct children fails
// with an error matching sbxerr.ErrTooLarge, so memory stays bounded
// whatever the directory holds.
func Children(r io.Reader, max int) ([]*tar.Header, error) {
	tr := tar.NewReader(r)
	first, err := tr.Next()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("empty archive")
	}
	if err != nil {
		return nil, fmt.Errorf("read tar: %w", err)
	}
	if first.Typeflag != tar.TypeDir {
		return nil, fmt.Errorf("archive of %q is not a directory", first.Name)
	}
	root := strings.TrimSuffix(first.Name, "/") + "/"
	var out []*tar.Header
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		rel, ok := strings.CutPrefix(hdr.Name, root)
		if !ok {
			continue
		}
		rel = strings.TrimSuffix(rel, "/")
		if rel == "" || strings.Contains(rel, "/") {
			continue
		}
		if len(out) == max {
			return nil, sbxerr.New(sbxerr.ErrTooLarge, "the directory has more than %d entries; list a subdirectory, or download it as tar", max)
		}
		out = append(out, &tar.Header{
			Name: rel, Typeflag: hdr.Typeflag, Size: hdr.Size, Mode: hdr.Mode,
			ModTime: hdr.ModTime, Linkname: hdr.Linkname,
		})
	}
}

// First reads the first header of an archive and returns it with a reader
// of its body. It fails on an empty archive.
func First(r io.Reader) (*tar.Header, io.Reader, error) {
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if errors.Is(err, io.EOF) {
		return nil, nil, errors.New("empty archive")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read tar: %w", err)
	}
	return hdr, tr, nil
}

// FileMode returns the fs.FileMode (type and permission bits) of a header.
// A hard link (TypeLink) is reported as a regular file.
func FileMode(hdr *tar.Header) fs.FileMode {
	if hdr.Typeflag == tar.TypeLink {
		h := *hdr
		h.Typeflag = tar.TypeReg
		return h.FileInfo().Mode()
	}
	return hdr.FileInfo().Mode()
}
