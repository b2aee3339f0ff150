package opensbx_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/opensbx/opensbx"
)

// Run a command and wait for it, like os/exec's Cmd.Output. A non-zero exit
// is an *ExitError, apart from errors reaching the sandbox.
func ExampleManager_Run() {
	ctx := context.Background()
	m, err := opensbx.New(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	sb, err := m.Create(ctx, opensbx.CreateOptions{Image: "busybox:latest"})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Delete(context.Background(), sb.ID)

	// Arguments are argv: no shell is involved unless you run one.
	res, err := m.Run(ctx, sb.ID, opensbx.ExecOptions{
		Command: "sh",
		Args:    []string{"-c", "echo hello $WHO; exit 3"},
		Env:     map[string]string{"WHO": "world"},
		Cwd:     "/tmp",
		// Stop the command, not only the wait, when ctx ends.
		KillOnCancel: true,
	})
	var exitErr *opensbx.ExitError
	switch {
	case errors.As(err, &exitErr):
		fmt.Printf("exit code %d, stdout %q\n", exitErr.ExitCode(), res.Stdout)
	case err != nil:
		log.Fatal(err) // the sandbox or the engine, not the command
	default:
		fmt.Printf("%s", res.Stdout)
	}
}

// Start a command, follow its output live, and resume after a disconnect
// from the last cursor seen.
func ExampleManager_FollowOutput() {
	ctx := context.Background()
	m, err := opensbx.New(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	const sandbox = "my-sandbox"
	cmd, err := m.Exec(ctx, sandbox, opensbx.ExecOptions{
		Command: "sh", Args: []string{"-c", "for i in 1 2 3; do echo $i; sleep 1; done"},
	})
	if err != nil {
		log.Fatal(err)
	}
	cursor := ""
	for {
		err := m.FollowOutput(ctx, sandbox, cmd.ID, cursor, func(r opensbx.OutputRecord) error {
			switch r.Type {
			case opensbx.RecordStdout:
				os.Stdout.Write(r.Data)
			case opensbx.RecordStderr:
				os.Stderr.Write(r.Data)
			case opensbx.RecordDropped:
				fmt.Printf("[%d bytes of %s dropped]\n", r.Dropped, r.Stream)
			case opensbx.RecordExit:
				fmt.Println("exit code", r.ExitCode)
			}
			cursor = r.Cursor // resume here after a disconnect
			return nil
		})
		if err == nil {
			return
		}
		log.Print("follow interrupted, resuming: ", err)
		time.Sleep(time.Second)
	}
}

// Feed an interactive program, then stop it with a signal.
func ExampleManager_SendStdin() {
	ctx := context.Background()
	m, err := opensbx.New(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	const sandbox = "my-sandbox"
	cmd, err := m.Exec(ctx, sandbox, opensbx.ExecOptions{Command: "cat", OpenStdin: true})
	if err != nil {
		log.Fatal(err)
	}
	if err := m.SendStdin(ctx, sandbox, cmd.ID, strings.NewReader("line 1\n"), false); err != nil {
		log.Fatal(err)
	}
	sig, _ := opensbx.ParseSignal("TERM")
	if _, err := m.KillCommand(ctx, sandbox, cmd.ID, sig); err != nil {
		log.Fatal(err)
	}
	done, err := m.WaitCommand(ctx, sandbox, cmd.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(done.State, *done.ExitCode == 128+int(syscall.SIGTERM))
}
