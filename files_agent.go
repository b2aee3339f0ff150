package opensbx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// Files through the agent
//
// While a sandbox with an agent runs, its files go through the agent: one
// stream on the open session per call, raw bytes without tar, in the
// sandbox's own mount namespace (so also into its tmpfs and volumes). The
// agent writes a file to a temporary name in the same directory and renames
// it over the target, so a write that fails leaves the old file as it was.
// Stopped and paused sandboxes go through the engine's archive API, which
// serves them too. Errors have the same kinds either way.

// fileInfoOf turns the agent's description of the entry at p into a
// FileInfo.
func fileInfoOf(p string, fi agent.FileInfo) FileInfo {
	out := FileInfo{
		Name:       fileBase(p),
		Path:       p,
		Type:       FileType(fi.Type),
		Size:       fi.Size,
		Mode:       fi.Mode,
		ModTime:    fi.ModTime,
		LinkTarget: fi.LinkTarget,
	}
	switch out.Type {
	case FileTypeFile, FileTypeDir, FileTypeSymlink, FileTypeOther:
	default:
		out.Type = fileTypeOf(fi.Mode)
	}
	return out
}

// agentFiles returns the session of sandbox id for a file call.
func (m *Manager) agentFiles(ctx context.Context, id string) (*agent.Client, error) {
	return m.agents.client(ctx, id)
}

// fileAgentErr gives an agent's file error the Manager's shape.
func (m *Manager) fileAgentErr(ctx context.Context, id, p string, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return sbxerr.Wrap(ErrNotFound, fmt.Errorf("no such file or directory: %q: %w", p, err))
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrConflict), errors.Is(err, ErrTooLarge), errors.Is(err, ErrUnsupported):
		return err
	}
	return m.agentErr(ctx, id, err)
}

func (m *Manager) agentStat(ctx context.Context, id, p string) (FileInfo, error) {
	client, err := m.agentFiles(ctx, id)
	if err != nil {
		return FileInfo{}, err
	}
	fi, err := client.Stat(ctx, p)
	if err != nil {
		return FileInfo{}, m.fileAgentErr(ctx, id, p, err)
	}
	return fileInfoOf(p, fi), nil
}

// agentOpen opens the file at p for reading; limit > 0 refuses a larger
// file with ErrTooLarge before any byte moves.
func (m *Manager) agentOpen(ctx context.Context, id, p string, limit int64) (io.ReadCloser, FileInfo, error) {
	client, err := m.agentFiles(ctx, id)
	if err != nil {
		return nil, FileInfo{}, err
	}
	rc, fi, err := client.ReadFile(ctx, p, limit)
	if err != nil {
		return nil, FileInfo{}, m.fileAgentErr(ctx, id, p, err)
	}
	return rc, fileInfoOf(p, fi), nil
}

func (m *Manager) agentRead(ctx context.Context, id, p string, limit int64) ([]byte, FileInfo, error) {
	rc, fi, err := m.agentOpen(ctx, id, p, limit)
	if err != nil {
		return nil, FileInfo{}, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, FileInfo{}, fmt.Errorf("read %q: %w", p, m.fileAgentErr(ctx, id, p, err))
	}
	if int64(len(data)) > limit {
		return nil, FileInfo{}, sbxerr.New(ErrTooLarge, "%q is over the limit of %d bytes", p, limit)
	}
	fi.Size = int64(len(data))
	return data, fi, nil
}

func (m *Manager) agentWrite(ctx context.Context, id, p string, r io.Reader, size int64, mode fs.FileMode) error {
	client, err := m.agentFiles(ctx, id)
	if err != nil {
		return err
	}
	if _, err := client.WriteFile(ctx, p, r, size, mode); err != nil {
		return m.fileAgentErr(ctx, id, p, err)
	}
	return nil
}

func (m *Manager) agentList(ctx context.Context, id, p string) ([]FileInfo, error) {
	client, err := m.agentFiles(ctx, id)
	if err != nil {
		return nil, err
	}
	var out []FileInfo
	_, err = client.ListDir(ctx, p, func(fi agent.FileInfo) error {
		if len(out) == maxListEntries {
			return sbxerr.New(ErrTooLarge, "the directory has more than %d entries; list a subdirectory, or download it as tar", maxListEntries)
		}
		e := fileInfoOf(path.Join(p, fi.Name), fi)
		e.Name = fi.Name
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, m.fileAgentErr(ctx, id, p, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if out == nil {
		out = []FileInfo{}
	}
	return out, nil
}

func (m *Manager) agentRemove(ctx context.Context, id, p string) error {
	client, err := m.agentFiles(ctx, id)
	if err != nil {
		return err
	}
	if err := client.Remove(ctx, p); err != nil {
		return m.fileAgentErr(ctx, id, p, err)
	}
	return nil
}

func (m *Manager) agentTarOut(ctx context.Context, id, p string) (io.ReadCloser, error) {
	client, err := m.agentFiles(ctx, id)
	if err != nil {
		return nil, err
	}
	rc, _, err := client.TarOut(ctx, p)
	if err != nil {
		return nil, m.fileAgentErr(ctx, id, p, err)
	}
	return rc, nil
}

func (m *Manager) agentTarIn(ctx context.Context, id, dir string, r io.Reader) error {
	client, err := m.agentFiles(ctx, id)
	if err != nil {
		return err
	}
	if _, err := client.TarIn(ctx, dir, r); err != nil {
		return m.fileAgentErr(ctx, id, dir, err)
	}
	return nil
}
