// Package agent is the Manager's side of the Opensbx agent: a small static
// program (opensbx-agent, in cmd/opensbx-agent; embedded by package bin)
// that runs in every sandbox and does commands and files there, over one
// live channel per sandbox instead of one engine exec per call.
//
// # The pieces
//
//   - The agent program's daemon, `opensbx-agent serve`, runs as root as
//     the sandbox's main process under the engine's init. It listens on an
//     abstract unix socket (wire.DefaultSocket) that only root inside the
//     sandbox may use, optionally supervising the sandbox's own main
//     command. Package server is its implementation.
//   - `opensbx-agent connect` is what the Manager runs as an exec (User
//     "0", AttachStdin, no TTY): it hands the exec's stdin and stdout to the
//     daemon over its socket (wire.Handoff, SCM_RIGHTS), so that the daemon
//     reads and writes the engine's stream itself, and waits until the
//     session ends; where the handoff fails it relays between them and the
//     socket. When it cannot reach the daemon, it exits with ExitNoAgent,
//     ExitRefused or ExitBusy.
//   - The channel is one yamux session over that exec's stream, the Manager
//     as the yamux client (the engine's stdout framing demultiplexed by the
//     caller); every call is one stream, framed as package wire describes.
//     Both sides write the session through a wire.Batcher, so that a call's
//     opening, request and answer each cross the engine as one message.
//   - Client, in this package, speaks it.
//
// # Using a Client
//
//	conn := ... // the relay exec's stdin and demultiplexed stdout
//	c, err := agent.NewClient(ctx, conn)
//	cmd, err := c.Exec(ctx, agent.ExecRequest{ID: "cmd_1", Argv: []string{"echo", "hi"}})
//	end, err := c.Follow(ctx, cmd.ID, outbuf.Pos{}, func(ch outbuf.Chunk) error {
//		// ch.Data of ch.Stream, or ch.Dropped bytes; ch.End is the cursor
//		return nil
//	})
//	// *end.ExitCode
//
// Commands outlive sessions: the agent keeps running and finished commands
// (bounded), so a Manager that restarts reconnects, compares Info().Instance
// with what it knew (a different instance means the sandbox restarted), lists
// Commands and follows them from the cursors it had.
//
// # Trust
//
// Code in a sandbox can replace its agent, so nothing the agent sends is
// trusted: frames are size-checked before anything is allocated (headers 1
// MiB, data 64 KiB), every answer is validated, a call ends when its ctx
// does, and a broken answer is ErrProtocol, never a panic or a hang. The
// agent's errors arrive as *RemoteError, matching ErrNotFound, ErrConflict,
// ErrInvalid, ErrTooLarge, ErrUnsupported (Opensbx's own sentinels) or
// ErrInternal.
//
// What the client does not do: it runs no shell and interprets no path;
// it does not sort listings or bound their length (the callback can); it
// does not reconnect (the Manager opens a new relay and a new Client).
package agent
