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
	"time"

	"github.com/opensbx/opensbx/internal/sbxerr"
	"github.com/opensbx/opensbx/internal/tarutil"
)

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
	err := m.engine.CopyTo(ctx, id, anchor, pr)
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
	if id, _, ok := m.liveAgent(ctx, sandboxID); ok {
		if err := m.agentWrite(ctx, id, p, fileCtxReader{ctx: ctx, r: r}, size, mode); err != nil {
			return fmt.Errorf("write file %q: %w", p, err)
		}
		return nil
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return fmt.Errorf("write file: %w", err)
	}
	if m.usesAgent(c) {
		if err := m.agentWrite(ctx, c.ID, p, fileCtxReader{ctx: ctx, r: r}, size, mode); err != nil {
			return fmt.Errorf("write file %q: %w", p, err)
		}
		return nil
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
	if m.usesAgent(c) {
		if err := m.agentTarIn(ctx, c.ID, p, r); err != nil {
			return fmt.Errorf("upload tar to %q: %w", p, err)
		}
		return nil
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
