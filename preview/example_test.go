package preview_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/httpapi"
	"github.com/opensbx/opensbx/preview"
)

// A Manager's sandboxes served at http://<name>.localhost:3000.
func Example() {
	ctx := context.Background()
	m, err := opensbx.New(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	p, err := preview.New(m, preview.WithBaseURL("http://localhost:3000"))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close() // after the server has shut down
	srv := &http.Server{Addr: "127.0.0.1:3000", Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go srv.ListenAndServe()
	defer srv.Shutdown(ctx)

	res, err := m.Create(ctx, opensbx.CreateOptions{
		Image:   "opensbx-test/busybox:1",
		Ports:   []string{"8080"},
		Command: []string{"httpd", "-f", "-p", "8080", "-h", "/"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Delete(ctx, res.Sandbox.ID)
	fmt.Println(p.URL(res.Sandbox)) // curl it: http://<name>.localhost:3000
}

// A private preview opens with its token, or once with a signed link.
func ExampleProxy_SignedURL() {
	ctx := context.Background()
	m, err := opensbx.New(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	secret, err := preview.LoadOrCreateSecret("./opensbx-data/preview-secret")
	if err != nil {
		log.Fatal(err)
	}
	p, err := preview.New(m, preview.WithSecret(secret), preview.WithBaseURL("https://sbx.example.com"))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	res, err := m.Create(ctx, opensbx.CreateOptions{Image: "opensbx-test/busybox:1", Ports: []string{"8080"}, Private: true})
	if err != nil {
		log.Fatal(err)
	}
	link, expires := p.SignedURL(res.Sandbox)
	fmt.Println("open in a browser until", expires.Format(time.Kitchen)+":", link)
	fmt.Println("or: curl -H 'Authorization: Bearer " + p.Token(res.Sandbox.ID) + "' " + p.URL(res.Sandbox))
}

// The API and the previews on one listener: requests for a preview host go
// to the Proxy, the others to the API.
func ExampleProxy_Matches() {
	m, err := opensbx.New(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	p, err := preview.New(m, preview.WithBaseURL("http://localhost:8080"))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	api := httpapi.New(m, httpapi.WithPreview(p))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.Matches(r.Host) {
			p.ServeHTTP(w, r) // <name>.localhost:8080
			return
		}
		api.ServeHTTP(w, r) // localhost:8080/v1/...
	})
	srv := &http.Server{Addr: "127.0.0.1:8080", Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
