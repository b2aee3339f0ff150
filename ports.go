package opensbx

import (
	"context"
	"fmt"
	"net"

	"github.com/opensbx/opensbx/internal/sbxerr"
)

// DialPort connects to TCP port on the loopback of sandbox id, through its
// agent's session: it works wherever the Manager reaches the agent, also
// when the sandbox's ports are not reachable from the Manager's network (a
// remote Docker engine, a Pod whose IP this machine cannot reach). The
// port need not be one the sandbox publishes. ctx bounds the connecting
// only; closing the connection ends it. It fails with ErrInvalid for a
// port outside 1 to 65535, ErrNotFound for an unknown sandbox, ErrConflict
// when the sandbox does not run or nothing accepts connections on the
// port, and ErrUnsupported for a sandbox without the agent.
func (m *Manager) DialPort(ctx context.Context, id string, port int) (net.Conn, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("dial port: %w", sbxerr.Invalid("port %d is not 1 to 65535", port))
	}
	sid, client, ok := m.liveAgent(ctx, id)
	if !ok {
		c, err := m.inspect(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("dial port: %w", err)
		}
		switch {
		case !m.cfg.agent || c.Labels[labelAgent] == "":
			return nil, fmt.Errorf("dial port: %w", sbxerr.New(ErrUnsupported, "sandbox %s runs without the agent", shortID(c.ID)))
		case !m.usesAgent(c) || stateOf(c.State) != StateRunning:
			return nil, fmt.Errorf("dial port: %w", sbxerr.Conflict("sandbox %s is %s", shortID(c.ID), stateOf(c.State)))
		}
		sid = c.ID
		if client, err = m.agents.client(ctx, sid); err != nil {
			return nil, fmt.Errorf("dial port: %w", err)
		}
	}
	conn, err := client.Dial(ctx, port)
	if err != nil {
		return nil, fmt.Errorf("dial port %d: %w", port, m.agentErr(ctx, sid, err))
	}
	return conn, nil
}
