package opensbx

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// TestDialPort: a port the sandbox does not publish is reached through the
// agent's session.
func TestDialPort(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	if !m.cfg.agent {
		_, err := m.DialPort(ctx, sb.ID, 8080)
		is.True(errors.Is(err, ErrUnsupported)) // only the agent can
		return
	}
	dialPortCase(t, m, sb.ID)
}

// dialPortCase serves a page on port 8080 of sandbox id and fetches it
// through DialPort.
func dialPortCase(t *testing.T, m *Manager, id string) {
	t.Helper()
	is := is.New(t)
	ctx := context.Background()
	_, err := m.DialPort(ctx, id, 8080)
	is.True(errors.Is(err, ErrConflict)) // nothing listens yet
	_, err = m.DialPort(ctx, id, 0)
	is.True(errors.Is(err, ErrInvalid))
	is.NoErr(m.WriteFile(ctx, id, "/tmp/www/index.html", []byte("through the agent"), 0o644))
	_, err = m.Exec(ctx, id, ExecOptions{Command: "httpd", Args: []string{"-f", "-p", "8080", "-h", "/tmp/www"}})
	is.NoErr(err)
	var body string
	waitFor(t, 30*time.Second, "httpd to answer through the agent", func() bool {
		c, err := m.DialPort(ctx, id, 8080)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
			return false
		}
		b, err := io.ReadAll(c)
		if err != nil {
			return false
		}
		body = string(b)
		return strings.HasPrefix(body, "HTTP/1.")
	})
	is.True(strings.Contains(body, " "+http.StatusText(http.StatusOK)))
	is.True(strings.HasSuffix(body, "through the agent"))
	is.NoErr(m.Delete(ctx, id))
	_, err = m.DialPort(ctx, id, 8080)
	is.True(errors.Is(err, ErrNotFound)) // gone
}
