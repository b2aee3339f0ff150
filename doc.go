// Package opensbx runs code nobody trusts in Docker containers
// ("sandboxes") and manages their whole life: create them from a local image
// with ports, environment, CPU and memory limits and a time to live; start,
// stop, restart, pause, resume, renew, inspect, list and delete them; read
// their resource use and port map; run commands in them and read or follow
// their output; read and write their files; and list, pull and remove images.
//
// A Manager owns the sandboxes of one namespace on one Docker engine. Every
// container it creates carries labels naming that namespace, and it neither
// sees nor touches any other container: a foreign container id is simply not
// found (ids are resolved among the Manager's own sandboxes before anything
// reaches the engine). Sandboxes run under an init with the Opensbx agent as
// their main process (see WithAgent), which runs their commands and serves
// their files over one live channel and keeps running commands across a
// restart of the Manager; they join an isolated network (see
// WithNetworkIsolation), publish their ports on 127.0.0.1 by default, and
// are stopped (or deleted, WithDeleteOnExpiry) when their time to live
// passes — also after the Manager restarts, when it has a state directory.
// A warm pool (WithPool) hands out ready sandboxes in milliseconds.
//
// Quick start:
//
//	ctx := context.Background()
//	m, err := opensbx.New(ctx, opensbx.WithStateDir("./opensbx-data"))
//	if err != nil {
//		return err // ErrUnavailable when no Docker engine answers
//	}
//	defer m.Close()
//
//	sb, err := m.Create(ctx, opensbx.CreateOptions{Image: "busybox:latest", TTL: 10 * time.Minute})
//	if err != nil {
//		return err
//	}
//	defer m.Delete(ctx, sb.ID)
//
// What it deliberately does not do: it never pulls an image behind your back
// (CreateOptions.PullMissing asks for it), never runs anything through a
// shell unless you run a shell yourself, and never stops or deletes
// sandboxes when it closes.
//
// Errors match the sentinels ErrNotFound, ErrConflict, ErrInvalid,
// ErrImageNotFound, ErrUnavailable, ErrClosed, ErrTooLarge, ErrUnsupported,
// ErrUnauthorized, ErrRegistry and ErrRateLimited with errors.Is.
package opensbx
