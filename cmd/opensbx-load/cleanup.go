package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dockerclient "github.com/docker/docker/client"
)

// Labels the Manager puts on every sandbox's container (names.go of
// package opensbx).
const (
	labelNamespace = "org.opensbx.namespace"
	labelName      = "org.opensbx.name"
)

const cleanupConcurrency = 8

// leaks is what the cleanup and the leak checks found.
type leaks struct {
	// AtEnd is the sandboxes not known deleted when the load ended (live
	// ones, and creates without a 201 answer that may have made one).
	AtEnd int `json:"not_deleted_at_end"`
	// Deleted is how many of them the cleanup's DELETE removed (204).
	Deleted int `json:"deleted_by_cleanup"`
	// API is every sandbox of the run that GET /v1/sandboxes still listed
	// after the cleanup ("name id").
	API        []string `json:"api"`
	APIChecked bool     `json:"api_checked"`
	// Docker is every container of the run the engine still had after
	// the server stopped ("id name").
	Docker []string `json:"docker"`
	// DockerBefore is how many containers the Docker check's filter saw
	// before the cleanup (at least the live sandboxes, or the check is
	// blind).
	DockerBefore  int    `json:"docker_before_cleanup"`
	DockerChecked bool   `json:"docker_checked"`
	DockerFilter  string `json:"docker_filter,omitempty"`
	// Removed is the leaks this command removed itself.
	Removed []string `json:"removed,omitempty"`
	// Errors is what went wrong in the cleanup or a check.
	Errors []string `json:"errors,omitempty"`
}

// cleanupAPI deletes, by name, every sandbox of the run not known deleted,
// then lists the server's sandboxes: a sandbox of the run still listed is
// a leak, deleted again. own says the namespace is the run's alone, so
// that every listed sandbox is the run's.
func cleanupAPI(ctx context.Context, l *loader, own bool) leaks {
	var out leaks
	left := l.live.remaining()
	out.AtEnd = len(left)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, cleanupConcurrency)
	for _, sb := range left {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			a := l.send(ctx, http.MethodDelete, "/v1/sandboxes/"+sb.name, nil, "", "", maxAnswer)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case a.err == nil && a.status == http.StatusNoContent:
				out.Deleted++
				l.live.deleted(sb)
			case a.err == nil && a.status == http.StatusNotFound:
				// Never made (a create that failed), or gone already.
			default:
				out.Errors = append(out.Errors, fmt.Sprintf("cleanup DELETE %s: %s", sb.name, describe(a)))
			}
		}()
	}
	wg.Wait()

	a := l.send(ctx, http.MethodGet, "/v1/sandboxes", nil, "", "", maxAnswer)
	var v struct {
		Sandboxes []struct{ ID, Name string }
	}
	if a.err != nil || a.status != http.StatusOK {
		out.Errors = append(out.Errors, "leak check GET /v1/sandboxes: "+describe(a))
		return out
	}
	if err := decodeJSON(a.body, &v); err != nil {
		out.Errors = append(out.Errors, "leak check GET /v1/sandboxes: "+err.Error())
		return out
	}
	out.APIChecked = true
	for _, s := range v.Sandboxes {
		if !own && !strings.HasPrefix(s.Name, prefix(l.cfg.id)) {
			continue
		}
		out.API = append(out.API, s.Name+" "+s.ID)
		a := l.send(ctx, http.MethodDelete, "/v1/sandboxes/"+s.ID, nil, "", "", maxAnswer)
		if a.err == nil && a.status == http.StatusNoContent {
			out.Removed = append(out.Removed, "DELETE "+s.Name)
		} else {
			out.Errors = append(out.Errors, fmt.Sprintf("DELETE leaked %s: %s", s.Name, describe(a)))
		}
	}
	return out
}

// dockerCheck is the leak check's view of the engine: the containers
// labelled with namespace ns and, unless own (the namespace is the run's
// alone), named with the run's prefix.
type dockerCheck struct {
	cli    *dockerclient.Client
	ns     string
	prefix string
	own    bool
}

// newDockerCheck makes the Docker client (DOCKER_HOST and friends); it does
// not contact the engine yet. The caller closes it.
func newDockerCheck(ns, namePrefix string, own bool) (*dockerCheck, error) {
	cli, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	return &dockerCheck{cli: cli, ns: ns, prefix: namePrefix, own: own}, nil
}

func (d *dockerCheck) close() { d.cli.Close() }

// filter says in a line which containers list returns.
func (d *dockerCheck) filter() string {
	f := labelNamespace + "=" + d.ns
	if !d.own {
		f += ", " + labelName + "=" + d.prefix + "*"
	}
	return f
}

// list returns the run's containers, stopped ones included.
func (d *dockerCheck) list(ctx context.Context) ([]container.Summary, error) {
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelNamespace+"="+d.ns))})
	if err != nil {
		return nil, err
	}
	out := cs[:0]
	for _, c := range cs {
		if c.Labels[labelNamespace] == d.ns && (d.own || strings.HasPrefix(c.Labels[labelName], d.prefix)) {
			out = append(out, c)
		}
	}
	return out, nil
}

// probe runs before the cleanup, while live sandboxes of the run exist:
// a filter that sees fewer containers than there are live sandboxes could
// not see a leak either (the Manager's labels changed), which is an error.
func (d *dockerCheck) probe(ctx context.Context, out *leaks, live int) {
	cs, err := d.list(ctx)
	if err != nil {
		out.Errors = append(out.Errors, "docker check before the cleanup: "+err.Error())
		return
	}
	out.DockerBefore = len(cs)
	if len(cs) < live {
		out.Errors = append(out.Errors, fmt.Sprintf("docker check: %s finds %d containers while %d sandboxes are live: it cannot see leaks",
			d.filter(), len(cs), live))
	}
}

// sweep lists the run's containers after the cleanup: each is a leak,
// force-removed. It touches nothing else.
func (d *dockerCheck) sweep(ctx context.Context, out *leaks) {
	out.DockerFilter = d.filter()
	cs, err := d.list(ctx)
	if err != nil {
		out.Errors = append(out.Errors, "docker check: "+err.Error())
		return
	}
	out.DockerChecked = true
	for _, c := range cs {
		desc := c.ID[:min(12, len(c.ID))] + " " + strings.Join(c.Names, ",")
		out.Docker = append(out.Docker, desc)
		if err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			out.Errors = append(out.Errors, "remove leaked container "+desc+": "+err.Error())
		} else {
			out.Removed = append(out.Removed, "docker rm "+desc)
		}
	}
}
