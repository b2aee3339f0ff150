package opensbx

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"github.com/opensbx/opensbx/internal/sbxerr"
	"github.com/opensbx/opensbx/internal/tarutil"
)

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
	if id, _, ok := m.liveAgent(ctx, sandboxID); ok {
		fi, err := m.agentStat(ctx, id, p)
		if err != nil {
			return FileInfo{}, fmt.Errorf("stat file: %w", err)
		}
		return fi, nil
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return FileInfo{}, fmt.Errorf("stat file: %w", err)
	}
	if m.usesAgent(c) {
		fi, err := m.agentStat(ctx, c.ID, p)
		if err != nil {
			return FileInfo{}, fmt.Errorf("stat file: %w", err)
		}
		return fi, nil
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
	rc, _, err := m.engine.CopyFrom(ctx, id, p)
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
		rc, st, err := m.engine.CopyFrom(ctx, id, target)
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
	if id, _, ok := m.liveAgent(ctx, sandboxID); ok {
		data, fi, err := m.agentRead(ctx, id, p, m.cfg.fileSizeLimit)
		if err != nil {
			return nil, FileInfo{}, fmt.Errorf("read file: %w", err)
		}
		return data, fi, nil
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return nil, FileInfo{}, fmt.Errorf("read file: %w", err)
	}
	limit := m.cfg.fileSizeLimit
	if m.usesAgent(c) {
		data, fi, err := m.agentRead(ctx, c.ID, p, limit)
		if err != nil {
			return nil, FileInfo{}, fmt.Errorf("read file: %w", err)
		}
		return data, fi, nil
	}
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
	if id, _, ok := m.liveAgent(ctx, sandboxID); ok {
		rc, fi, err := m.agentOpen(ctx, id, p, 0)
		if err != nil {
			done()
			return nil, FileInfo{}, fmt.Errorf("open file: %w", err)
		}
		return &fileStream{r: rc, body: rc, done: done}, fi, nil
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		done()
		return nil, FileInfo{}, fmt.Errorf("open file: %w", err)
	}
	if m.usesAgent(c) {
		rc, fi, err := m.agentOpen(ctx, c.ID, p, 0)
		if err != nil {
			done()
			return nil, FileInfo{}, fmt.Errorf("open file: %w", err)
		}
		return &fileStream{r: rc, body: rc, done: done}, fi, nil
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
	if m.usesAgent(c) {
		rc, err := m.agentTarOut(ctx, c.ID, p)
		if err != nil {
			done()
			return nil, fmt.Errorf("download tar: %w", err)
		}
		return &fileStream{r: rc, body: rc, done: done}, nil
	}
	rc, _, err := m.engine.CopyFrom(ctx, c.ID, p)
	if err != nil {
		err = m.filePathError(ctx, c.ID, p, err)
		done()
		return nil, fmt.Errorf("download tar: %w", err)
	}
	return &fileStream{r: rc, body: rc, done: done}, nil
}
