package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// FuzzQueryFlags: whatever query a client sends, a flag is true, false or
// a 400 naming it, and a file mode is permission bits or a 400.
func FuzzQueryFlags(f *testing.F) {
	for _, s := range []string{"stream=true", "stream=x", "wait=1&wait=0", "stream=%zz", "force=TRUE", "stream=", "mode=0755", "mode=99999", "mode=-1", "mode=0x1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL.RawQuery = raw
		for _, name := range []string{"stream", "wait", "force", "close"} {
			_, err := boolQuery(r, name)
			var ae *apiError
			if err != nil && (!errors.As(err, &ae) || ae.status != http.StatusBadRequest) {
				t.Fatalf("boolQuery(%q, %s): %v, not a 400", raw, name, err)
			}
		}
		q, _ := url.ParseQuery(raw)
		mode, err := parseMode(q.Get("mode"))
		var ae *apiError
		switch {
		case err != nil && (!errors.As(err, &ae) || ae.status != http.StatusBadRequest):
			t.Fatalf("parseMode(%q): %v, not a 400", q.Get("mode"), err)
		case err == nil && mode > 0o7777:
			t.Fatalf("parseMode(%q) = %o", q.Get("mode"), mode)
		}
	})
}
