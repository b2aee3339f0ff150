package opensbx

// commandRegistry keeps the commands of every sandbox. (Placeholder until
// the commands feature lands.)
type commandRegistry struct{ m *Manager }

func newCommandRegistry(m *Manager) (*commandRegistry, error) { return &commandRegistry{m: m}, nil }

// forget drops every command record of sandbox id.
func (r *commandRegistry) forget(id string) {}

// close releases the registry after the Manager's goroutines have stopped.
func (r *commandRegistry) close() error { return nil }
