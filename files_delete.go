package opensbx

import (
	"context"
	"fmt"
	"strings"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

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
	if m.usesAgent(c) {
		if err := m.agentRemove(ctx, c.ID, p); err != nil {
			return fmt.Errorf("delete file %q: %w", p, err)
		}
		return nil
	}
	if _, err := m.fileStat(ctx, c.ID, p); err != nil {
		return fmt.Errorf("delete file: %w", err)
	}
	if st := stateOf(c.State); st != StateRunning {
		return fmt.Errorf("delete file: %w", sbxerr.Conflict("sandbox is %s; deleting runs rm inside it, which needs a running sandbox", st))
	}
	res, err := m.fileExec(ctx, c.ID, []string{"rm", "-rf", "--", p})
	if err != nil {
		return fmt.Errorf("delete file %q: %w", p, m.raced(ctx, c.ID, err))
	}
	switch {
	case missingTool(res):
		return fmt.Errorf("delete file %q: %w", p, sbxerr.New(ErrUnsupported, "the sandbox's image has no rm, which deleting files needs (%s)", toolOutput(res)))
	case res.ExitCode != 0:
		return fmt.Errorf("delete file %q: rm exited with %d: %s", p, res.ExitCode, toolOutput(res))
	}
	return nil
}

// fileExecLimit bounds the output of the tools Manager runs for files.
const fileExecLimit = 4 << 10

// fileExec runs argv as root in running container id, without a shell or a
// TTY, waits for it to end and returns its exit code and (capped) output.
// A cancelled ctx ends the wait; the tool itself is not killed (the Engine
// API cannot), but rm ends by itself.
func (m *Manager) fileExec(ctx context.Context, id string, argv []string) (engine.RunResult, error) {
	return engine.Run(ctx, gatedEngine{m.engine, m}, id, engine.ExecSpec{Cmd: argv, User: "0"}, fileExecLimit)
}

// missingTool reports whether the engine could not start the tool: runc
// exits 126 (cannot execute) or 127 (not found) for it, with a message.
func missingTool(r engine.RunResult) bool { return r.ExitCode == 126 || r.ExitCode == 127 }

// toolOutput is a tool's output for a message.
func toolOutput(r engine.RunResult) string {
	s := strings.TrimSpace(string(r.Output))
	if s == "" {
		return "no output"
	}
	return s
}
