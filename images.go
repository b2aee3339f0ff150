package opensbx

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// Image is a local image as the engine reports it.
type Image struct {
	// ID is the full image id ("sha256:<64 hex>").
	ID string `json:"id"`
	// Tags are the image's repository tags in their familiar form
	// ("busybox:latest", "127.0.0.1:5000/ns/img:1"); empty for an untagged
	// image.
	Tags []string `json:"tags"`
	// Digests are the image's repository digests ("name@sha256:..."), known
	// for images pulled from or pushed to a registry.
	Digests []string `json:"digests,omitempty"`
	// Size is the image's size in bytes, shared layers included.
	Size int64 `json:"size"`
	// Created is when the image was built (zero when the engine does not say).
	Created time.Time `json:"created"`
}

// ImageDetail is one image with what Manager.Image adds to the list entry.
type ImageDetail struct {
	Image
	// Architecture is the CPU architecture the image was built for ("amd64").
	Architecture string `json:"architecture"`
	// OS is the operating system the image was built for ("linux").
	OS string `json:"os"`
	// Sandboxes are the ids of this Manager's sandboxes (in any state) whose
	// container runs this image, sorted. Sandboxes of other namespaces and
	// foreign containers are not listed (but still keep RemoveImage from
	// deleting the image without force).
	Sandboxes []string `json:"sandboxes"`
}

// RegistryAuth holds the credentials of one pull. Its String, GoString and
// LogValue methods redact every secret, and the Manager never logs it; it is
// sent to the engine only, as the X-Registry-Auth header.
type RegistryAuth struct {
	// Username and Password are basic credentials.
	Username, Password string
	// ServerAddress is the registry the credentials are for (informative:
	// the engine uses them for the registry of the reference being pulled).
	ServerAddress string
	// IdentityToken is an OAuth refresh token, used instead of Password.
	IdentityToken string
}

// String describes a without its secrets.
func (a RegistryAuth) String() string {
	return fmt.Sprintf("RegistryAuth{Username:%q ServerAddress:%q Password:%s IdentityToken:%s}",
		a.Username, a.ServerAddress, redacted(a.Password), redacted(a.IdentityToken))
}

// GoString is String, so %#v redacts too.
func (a RegistryAuth) GoString() string { return a.String() }

// LogValue makes slog log a without its secrets.
func (a RegistryAuth) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("username", a.Username),
		slog.String("server_address", a.ServerAddress),
		slog.String("password", redacted(a.Password)),
		slog.String("identity_token", redacted(a.IdentityToken)),
	)
}

func redacted(s string) string {
	if s == "" {
		return `""`
	}
	return "[redacted]"
}

// PullProgress is one progress message of a pull, as the engine sent it.
type PullProgress struct {
	// Layer is the layer id the message is about; for messages about the
	// whole pull it is the tag or digest being pulled, or empty.
	Layer string `json:"layer,omitempty"`
	// Status is the engine's text: "Pulling fs layer", "Downloading",
	// "Pull complete", "Already exists", "Digest: sha256:...", ...
	Status string `json:"status"`
	// Current and Total are the bytes done and expected for Layer, when the
	// engine reports them (zero otherwise).
	Current int64 `json:"current,omitempty"`
	Total   int64 `json:"total,omitempty"`
}

// PullOptions configure one PullImage call.
type PullOptions struct {
	// Auth are registry credentials; nil pulls anonymously.
	Auth *RegistryAuth
	// Progress, when not nil, is called once per progress message, from the
	// goroutine doing the pull (one at a time, never after PullImage
	// returned). It should return quickly: a slow callback slows the pull
	// for every caller sharing it, and it must not call PullImage for the
	// same reference. A caller that joins a pull already in flight gets the
	// messages from the moment it joined.
	Progress func(PullProgress)
}

// idRE matches an image id or id prefix, with or without "sha256:".
var idRE = regexp.MustCompile(`^(sha256:)?[0-9a-f]{1,64}$`)

// ParseReference validates ref as a Docker image reference (name, name:tag,
// host[:port]/path/name:tag, name@sha256:<64 hex>, name:tag@digest) and
// returns it normalised to its familiar form with the default tag made
// explicit: "busybox" gives "busybox:latest", "docker.io/library/busybox:1"
// gives "busybox:1", "127.0.0.1:5000/ns/img" gives "127.0.0.1:5000/ns/img:latest".
// A malformed reference (upper case in the path, empty, a bad digest, an
// image id, surrounding spaces) fails with ErrInvalid.
func ParseReference(ref string) (string, error) {
	named, err := parseNamed(ref)
	if err != nil {
		return "", err
	}
	return reference.FamiliarString(reference.TagNameOnly(named)), nil
}

func parseNamed(ref string) (reference.Named, error) {
	if ref == "" {
		return nil, invalidf("image reference is empty")
	}
	if strings.TrimSpace(ref) != ref {
		return nil, invalidf("image reference %q has surrounding spaces", ref)
	}
	if strings.HasPrefix(ref, "sha256:") {
		return nil, invalidf("%q is an image id, not a reference", ref)
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, invalidf("image reference %q: %v", ref, err)
	}
	return named, nil
}

// imageTarget validates ref for a local lookup (Image, RemoveImage, Create):
// an image id or id prefix ("sha256:" optional) is passed on unchanged, any
// other ref must be a valid reference and is passed on normalised.
func imageTarget(ref string) (string, error) {
	if idRE.MatchString(ref) {
		return ref, nil
	}
	return ParseReference(ref)
}

// Images lists the images present on the engine (every image, not only
// those of this Manager's sandboxes), newest first. It fails with
// ErrUnavailable when the engine cannot be reached.
func (m *Manager) Images(ctx context.Context) ([]Image, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	list, err := m.docker.ImageList(ctx, image.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", engine.Classify(err))
	}
	out := make([]Image, 0, len(list))
	for _, s := range list {
		out = append(out, Image{
			ID:      s.ID,
			Tags:    realRefs(s.RepoTags),
			Digests: realRefs(s.RepoDigests),
			Size:    s.Size,
			Created: time.Unix(s.Created, 0).UTC(),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// realRefs drops the "<none>:<none>" placeholders older engines report for
// untagged images and returns a non-nil slice.
func realRefs(refs []string) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		if !strings.HasPrefix(r, "<none>") {
			out = append(out, r)
		}
	}
	return out
}

// Image inspects one local image by reference, id or unique id prefix
// ("sha256:" optional), and lists this Manager's sandboxes that use it. It
// fails with ErrInvalid for a malformed reference (before asking the
// engine), ErrImageNotFound when no local image matches, and ErrUnavailable
// when the engine cannot be reached.
func (m *Manager) Image(ctx context.Context, ref string) (*ImageDetail, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	target, err := imageTarget(ref)
	if err != nil {
		return nil, fmt.Errorf("inspect image: %w", err)
	}
	ii, err := m.docker.ImageInspect(ctx, target)
	if err != nil {
		return nil, fmt.Errorf("inspect image %q: %w", ref, imageErr(err))
	}
	d := &ImageDetail{
		Image:        imageFromInspect(ii),
		Architecture: ii.Architecture,
		OS:           ii.Os,
		Sandboxes:    []string{},
	}
	cs, err := m.listOwned(ctx)
	if err != nil {
		return nil, fmt.Errorf("inspect image %q: %w", ref, err)
	}
	for _, c := range cs {
		if c.ImageID == ii.ID {
			d.Sandboxes = append(d.Sandboxes, c.ID)
		}
	}
	sort.Strings(d.Sandboxes)
	return d, nil
}

func imageFromInspect(ii image.InspectResponse) Image {
	img := Image{
		ID:      ii.ID,
		Tags:    realRefs(ii.RepoTags),
		Digests: realRefs(ii.RepoDigests),
		Size:    ii.Size,
	}
	if t, err := time.Parse(time.RFC3339Nano, ii.Created); err == nil {
		img.Created = t.UTC()
	}
	return img
}

// imageErr classifies an engine error about a local image: not found
// becomes ErrImageNotFound (which also matches ErrNotFound).
func imageErr(err error) error {
	err = engine.Classify(err)
	if errors.Is(err, ErrNotFound) && !errors.Is(err, ErrImageNotFound) {
		return sbxerr.Wrap(ErrImageNotFound, err)
	}
	return err
}

// RemoveImage removes a local image by reference, id or unique id prefix.
// Given a tag of an image that has other tags, it only removes that tag.
// An image used by any container (a sandbox in any state, or a container
// that is not a sandbox) is not removed without force: that fails with
// ErrConflict and the engine's message. With force, a tag is removed even
// when a container uses the image (the image itself stays, untagged, until
// the container is gone), and an id removes a stopped container's image;
// an image used by a running container cannot be removed by id even with
// force (ErrConflict). Other failures: ErrInvalid for a malformed reference
// (before asking the engine), ErrImageNotFound for an unknown image.
func (m *Manager) RemoveImage(ctx context.Context, ref string, force bool) error {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	target, err := imageTarget(ref)
	if err != nil {
		return fmt.Errorf("remove image: %w", err)
	}
	if _, err := m.docker.ImageRemove(ctx, target, image.RemoveOptions{Force: force, PruneChildren: true}); err != nil {
		return fmt.Errorf("remove image %q: %w", ref, imageErr(err))
	}
	return nil
}

// PullImage pulls ref (a reference, see ParseReference; not an image id)
// from its registry and returns the local image. Progress messages go to
// opts.Progress. Concurrent pulls of the same normalised reference with the
// same credentials share one engine request: every caller gets the result
// and its own progress callbacks, and each one still returns when its own
// ctx ends (context.Canceled or DeadlineExceeded in the chain); the shared
// request is cancelled once no caller waits for it any more. A pull whose
// engine stream reports nothing for the Manager's pull inactivity timeout
// (WithPullInactivityTimeout) is aborted with an error matching
// ErrUnavailable and context.DeadlineExceeded.
//
// Errors: ErrInvalid for a malformed reference (before any network call);
// ErrImageNotFound for an unknown repository, tag or digest and
// ErrUnauthorized when the registry refuses the credentials, both with the
// registry's message; ErrUnavailable when the engine cannot be reached;
// other registry failures (unreachable registry, broken layer) match
// ErrRegistry and carry the engine's message. A pull that failed never
// returns an Image.
func (m *Manager) PullImage(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	norm, err := ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("pull image: %w", err)
	}
	auth := ""
	if opts.Auth != nil {
		auth, err = registry.EncodeAuthConfig(registry.AuthConfig{
			Username:      opts.Auth.Username,
			Password:      opts.Auth.Password,
			ServerAddress: opts.Auth.ServerAddress,
			IdentityToken: opts.Auth.IdentityToken,
		})
		if err != nil {
			return nil, fmt.Errorf("pull image %q: encode credentials: %w", norm, errors.Join(ErrInvalid, err))
		}
	}
	return m.pulls.do(ctx, norm, auth, opts.Progress)
}

// ensureImage checks that ref is present locally, pulling it through the
// shared pull path when pull is set. A malformed ref is ErrInvalid; a
// missing image without pull is ErrImageNotFound saying to pull it first.
func (m *Manager) ensureImage(ctx context.Context, ref string, pull bool) error {
	target, err := imageTarget(ref)
	if err != nil {
		return err
	}
	_, err = m.docker.ImageInspect(ctx, target)
	if err == nil {
		return nil
	}
	err = imageErr(err)
	if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("image %q: %w", ref, err)
	}
	if !pull {
		return fmt.Errorf("image %q not found locally: pull it first (POST /v1/images/pull, Manager.PullImage) or ask Create to (PullMissing): %w", ref, err)
	}
	norm, perr := ParseReference(ref)
	if perr != nil {
		return fmt.Errorf("image %q is not present locally and an image id cannot be pulled: %w", ref, err)
	}
	if _, err := m.pulls.do(ctx, norm, "", nil); err != nil {
		return err
	}
	return nil
}

// pullGroup shares concurrent pulls of one normalised reference (with the
// same credentials): the first caller starts a flight, a goroutine owned by
// the Manager that makes the one engine request, and later callers join it.
// A flight is cancelled when its last waiter leaves, and forgotten when it
// ends, so a pull after a finished one asks the engine again.
type pullGroup struct {
	m       *Manager
	mu      sync.Mutex // guards flights and every flight's waiters
	flights map[string]*pullFlight
}

func newPullGroup(m *Manager) *pullGroup {
	return &pullGroup{m: m, flights: map[string]*pullFlight{}}
}

// pullFlight is one engine pull and the callers waiting for it.
type pullFlight struct {
	key    string
	ref    string // normalised reference
	auth   string // encoded X-Registry-Auth; secret, never logged
	cancel context.CancelFunc
	done   chan struct{} // closed when img and err are final

	img *Image
	err error

	waiters int // guarded by pullGroup.mu

	mu   sync.Mutex // guards subs
	subs []*pullSub
}

// pullSub is one caller's progress callback. Its mutex is held while the
// callback runs, so once leave returns the callback is never called again.
type pullSub struct {
	mu   sync.Mutex
	fn   func(PullProgress)
	gone bool
}

func (s *pullSub) send(p PullProgress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.gone {
		s.fn(p)
	}
}

func (s *pullSub) leave() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.gone = true
	s.mu.Unlock()
}

// do joins (or starts) the flight for ref and auth and waits for it or ctx.
func (g *pullGroup) do(ctx context.Context, ref, auth string, progress func(PullProgress)) (*Image, error) {
	key := ref
	if auth != "" {
		sum := sha256.Sum256([]byte(auth))
		key += "\x00" + hex.EncodeToString(sum[:])
	}
	g.mu.Lock()
	f := g.flights[key]
	if f == nil {
		f = &pullFlight{key: key, ref: ref, auth: auth, done: make(chan struct{})}
		var fctx context.Context
		fctx, f.cancel = context.WithCancel(g.m.ctx)
		g.flights[key] = f
		if !g.m.goBackground(func(context.Context) { g.run(fctx, f) }) {
			delete(g.flights, key)
			g.mu.Unlock()
			f.cancel()
			return nil, ErrClosed
		}
	}
	f.waiters++
	g.mu.Unlock()

	var sub *pullSub
	if progress != nil {
		sub = &pullSub{fn: progress}
		f.mu.Lock()
		f.subs = append(f.subs, sub)
		f.mu.Unlock()
	}
	defer g.leave(f, sub)

	select {
	case <-f.done:
		if f.err != nil {
			return nil, f.err
		}
		img := *f.img
		img.Tags = append([]string(nil), f.img.Tags...)
		img.Digests = append([]string(nil), f.img.Digests...)
		return &img, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("pull image %q: %w", ref, context.Cause(ctx))
	}
}

// leave unsubscribes a waiter; the last one to leave an unfinished flight
// cancels it.
func (g *pullGroup) leave(f *pullFlight, sub *pullSub) {
	sub.leave()
	g.mu.Lock()
	defer g.mu.Unlock()
	f.waiters--
	if f.waiters > 0 {
		return
	}
	select {
	case <-f.done:
	default:
		f.cancel()
		if g.flights[f.key] == f {
			delete(g.flights, f.key)
		}
	}
}

// run makes the flight's engine request and publishes the result.
func (g *pullGroup) run(ctx context.Context, f *pullFlight) {
	img, err := g.m.pull(ctx, f)
	g.mu.Lock()
	if g.flights[f.key] == f {
		delete(g.flights, f.key)
	}
	f.img, f.err = img, err
	close(f.done)
	g.mu.Unlock()
	f.cancel()
}

// broadcast sends p to every subscriber still waiting.
func (f *pullFlight) broadcast(p PullProgress) {
	f.mu.Lock()
	subs := append([]*pullSub(nil), f.subs...)
	f.mu.Unlock()
	for _, s := range subs {
		s.send(p)
	}
}

// errPullStalled is the cancel cause of a pull that reported nothing for
// the inactivity timeout.
var errPullStalled = errors.New("pull stalled")

// pull makes the engine request of f, reads its progress stream to the end
// and inspects the pulled image.
func (m *Manager) pull(ctx context.Context, f *pullFlight) (*Image, error) {
	idle := m.cfg.pullInactivity
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(idle, func() { cancel(errPullStalled) })
	defer timer.Stop()
	fail := func(err error) (*Image, error) {
		if errors.Is(context.Cause(pctx), errPullStalled) {
			err = fmt.Errorf("%w: %w", sbxerr.New(ErrUnavailable, "no progress for %v", idle), context.DeadlineExceeded)
		} else {
			err = pullErr(err)
		}
		return nil, fmt.Errorf("pull image %q: %w", f.ref, err)
	}

	rc, err := m.docker.ImagePull(pctx, f.ref, image.PullOptions{RegistryAuth: f.auth})
	if err != nil {
		return fail(err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var msg jsonmessage.JSONMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fail(fmt.Errorf("read progress: %w", err))
		}
		timer.Reset(idle)
		if msg.Error != nil || msg.ErrorMessage != "" {
			return nil, fmt.Errorf("pull image %q: %w", f.ref, streamError(msg))
		}
		p := PullProgress{Layer: msg.ID, Status: msg.Status}
		if msg.Progress != nil {
			p.Current, p.Total = msg.Progress.Current, msg.Progress.Total
		}
		f.broadcast(p)
	}
	timer.Stop()
	ii, err := m.docker.ImageInspect(ctx, f.ref)
	if err != nil {
		return nil, fmt.Errorf("pull image %q: inspect after pull: %w", f.ref, imageErr(err))
	}
	img := imageFromInspect(ii)
	return &img, nil
}

// pullErr classifies an error of the engine's pull call. The engine marks
// some registry errors by kind (an unknown manifest is a 404) but reports
// others, such as a registry's refusal of missing credentials, as plain
// server errors; those are classified by their text like stream errors.
func pullErr(err error) error {
	err = imageErr(err)
	for _, kind := range []error{ErrNotFound, ErrUnauthorized, ErrUnavailable, ErrInvalid, ErrConflict} {
		if errors.Is(err, kind) {
			return err
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if kind := registryKind(err.Error(), 0); kind != nil {
		return sbxerr.Wrap(kind, err)
	}
	return sbxerr.Wrap(ErrRegistry, err)
}

// streamError turns an error message of the engine's pull stream into a
// typed error keeping the registry's message.
func streamError(msg jsonmessage.JSONMessage) error {
	text, code := msg.ErrorMessage, 0
	if msg.Error != nil {
		code = msg.Error.Code
		if msg.Error.Message != "" {
			text = msg.Error.Message
		}
	}
	if kind := registryKind(text, code); kind != nil {
		return sbxerr.New(kind, "%s", text)
	}
	return sbxerr.New(ErrRegistry, "%s", text)
}

// registryKind tells ErrUnauthorized or ErrImageNotFound from a registry
// error's text (and HTTP-like code, when the engine gives one), or nil.
// The engine passes these errors on as text only, so this is the one place
// where errors are classified by their message.
func registryKind(text string, code int) error {
	lower := strings.ToLower(text)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(lower, s) {
				return true
			}
		}
		return false
	}
	switch {
	case code == 404 || has("manifest unknown", "name unknown", "does not exist"):
		// Before the unauthorized check: Docker Hub answers "pull access
		// denied ..., repository does not exist" for an unknown repository.
		return ErrImageNotFound
	case code == 401 || code == 403 || has("unauthorized", "denied", "authentication required", "no basic auth credentials"):
		return ErrUnauthorized
	case has("not found"):
		return ErrImageNotFound
	}
	return nil
}
