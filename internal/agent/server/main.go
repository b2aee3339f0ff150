//go:build linux

package server

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// Main is the sandbox's main command (the caller's own long-running
// program, or the image's entrypoint) run by the agent as a supervised
// child: stdio inherited, in the agent's session and process group.
type Main struct {
	proc *os.Process
	done chan struct{}
	code int
}

// StartError is a main command that could not start. Code is the exit
// code a shell would give: 127 not found, 126 otherwise.
type StartError struct {
	Code int
	Msg  string
}

func (e *StartError) Error() string { return e.Msg }

// StartMain starts argv as user ("" for the agent's own; resolved from the
// passwd and group files of cfg, defaults applied), with the agent's
// environment and, for another user than the agent's, HOME from the
// user's passwd entry. The program is looked up in PATH unless it contains
// a slash. It fails with a *StartError.
func StartMain(argv []string, user string, cfg Config) (*Main, error) {
	cfg.defaults()
	if len(argv) == 0 || argv[0] == "" {
		return nil, &StartError{Code: 127, Msg: "no main command"}
	}
	env := cfg.Env
	var cred *syscall.Credential
	if user != "" {
		acct, err := resolveUser(user, cfg.PasswdFile, cfg.GroupFile)
		if err != nil {
			return nil, &StartError{Code: 126, Msg: err.Error()}
		}
		if acct.uid != os.Getuid() || acct.gid != os.Getgid() {
			cred = &syscall.Credential{Uid: uint32(acct.uid), Gid: uint32(acct.gid), Groups: acct.groups}
			if cred.Groups == nil {
				cred.Groups = []uint32{}
			}
			env = append(append([]string(nil), env...), "HOME="+acct.home)
		}
	}
	prog, code, msg := lookPath(argv[0], envValue(env, "PATH"), "")
	if msg != "" {
		return nil, &StartError{Code: code, Msg: msg}
	}
	proc, err := os.StartProcess(prog, argv, &os.ProcAttr{
		Env:   env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   &syscall.SysProcAttr{Credential: cred},
	})
	if err != nil {
		code := 126
		if os.IsNotExist(err) {
			code = 127
		}
		return nil, &StartError{Code: code, Msg: fmt.Sprintf("exec: %q: %v", argv[0], pathErrText(err))}
	}
	m := &Main{proc: proc, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		ps, err := proc.Wait()
		if err != nil {
			m.code = 255
			return
		}
		m.code = exitCode(ps)
	}()
	return m, nil
}

// PID returns the main command's process id.
func (m *Main) PID() int { return m.proc.Pid }

// Signal forwards sig to the main command.
func (m *Main) Signal(sig os.Signal) error { return m.proc.Signal(sig) }

// Done is closed when the main command has ended.
func (m *Main) Done() <-chan struct{} { return m.done }

// ExitCode is the main command's exit status once Done is closed: 128+N
// when signal N killed it.
func (m *Main) ExitCode() int { return m.code }

// String describes the main command for logs.
func (m *Main) String() string { return "pid " + strconv.Itoa(m.proc.Pid) }
