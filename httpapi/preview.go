package httpapi

import (
	"time"

	"github.com/opensbx/opensbx"
)

// Preview is what the API needs from a preview proxy: the "url" of every
// sandbox that publishes a port, and the token and signed link of private
// ones. *preview.Proxy (package github.com/opensbx/opensbx/preview)
// implements it.
type Preview interface {
	// URL is the preview address of sb, or "" when it has none.
	URL(sb *opensbx.Sandbox) string
	// PrivateByDefault says whether a create request without "private"
	// makes a private sandbox.
	PrivateByDefault() bool
	// Token is the preview token of the sandbox with this full id.
	Token(sandboxID string) string
	// SignedURL is URL(sb) with a signed link parameter, and when that
	// link expires.
	SignedURL(sb *opensbx.Sandbox) (string, time.Time)
}

// WithPreview gives sandboxes the "url" of p (instead of WithBaseDomain's)
// and makes create requests take "private" (default
// p.PrivateByDefault()). The create response of a private sandbox then
// carries "preview_token" and a "signed_url" with its
// "signed_url_expires_at"; list and inspect never show tokens.
func WithPreview(p Preview) Option {
	return func(s *server) { s.preview = p }
}

// createResponse is the answer of a create: the sandbox and, for a private
// one, what opens its preview.
type createResponse struct {
	sandboxView
	PreviewToken       string `json:"preview_token,omitempty"`
	SignedURL          string `json:"signed_url,omitempty"`
	SignedURLExpiresAt string `json:"signed_url_expires_at,omitempty"`
}

func (s *server) createView(sb *opensbx.Sandbox) createResponse {
	out := createResponse{sandboxView: s.view(sb, true)}
	if s.preview != nil && sb.Private {
		out.PreviewToken = s.preview.Token(sb.ID)
		if u, exp := s.preview.SignedURL(sb); !exp.IsZero() {
			out.SignedURL, out.SignedURLExpiresAt = u, rfc3339(exp)
		}
	}
	return out
}

// private is the Private of a create request's "private" (nil when absent).
func (s *server) private(asked *bool) bool {
	if asked != nil {
		return *asked
	}
	return s.preview != nil && s.preview.PrivateByDefault()
}
