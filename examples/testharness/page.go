// Package testharness shows how a project tests code against real servers
// with sandboxtest: its tests start busybox httpd in a sandbox, serve a page
// the test wrote into it, wait for the server and fetch the page over the
// published port. Read harness_test.go; this file only holds the code under
// test, a tiny page renderer.
package testharness

import (
	"fmt"
	"html"
)

// Page renders a minimal HTML page with the given title and paragraph,
// escaping both.
func Page(title, text string) []byte {
	return fmt.Appendf(nil, "<!doctype html>\n<html><head><title>%s</title></head>\n<body><p>%s</p></body></html>\n",
		html.EscapeString(title), html.EscapeString(text))
}
