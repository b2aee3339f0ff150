package opensbx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"

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
	out := reference.FamiliarString(reference.TagNameOnly(named))
	if strings.HasPrefix(out, "sha256:") {
		// A repository named sha256 reads like an image id once tagged.
		return "", sbxerr.Invalid("image reference %q is ambiguous with an image id", ref)
	}
	return out, nil
}

func parseNamed(ref string) (reference.Named, error) {
	if ref == "" {
		return nil, sbxerr.Invalid("image reference is empty")
	}
	if strings.TrimSpace(ref) != ref {
		return nil, sbxerr.Invalid("image reference %q has surrounding spaces", ref)
	}
	if strings.HasPrefix(ref, "sha256:") {
		return nil, sbxerr.Invalid("%q is an image id, not a reference", ref)
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, sbxerr.Invalid("image reference %q: %v", ref, err)
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
	list, err := m.engine.Images(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]Image, 0, len(list))
	for _, s := range list {
		out = append(out, imageOf(s))
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
	ii, err := m.engine.ImageInspect(ctx, target)
	if err != nil {
		return nil, fmt.Errorf("inspect image %q: %w", ref, err)
	}
	d := &ImageDetail{
		Image:        imageOf(ii),
		Architecture: ii.Architecture,
		OS:           ii.OS,
		Sandboxes:    []string{},
	}
	cs, err := m.index.refresh(ctx)
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

// imageOf is the public form of an engine image.
func imageOf(ii engine.Image) Image {
	return Image{
		ID:      ii.ID,
		Tags:    realRefs(ii.RepoTags),
		Digests: realRefs(ii.RepoDigests),
		Size:    ii.Size,
		Created: ii.Created.UTC(),
	}
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
	if err := m.engine.ImageRemove(ctx, target, force); err != nil {
		return fmt.Errorf("remove image %q: %w", ref, err)
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
	var auth *engine.RegistryAuth
	if a := opts.Auth; a != nil {
		auth = &engine.RegistryAuth{Username: a.Username, Password: a.Password, ServerAddress: a.ServerAddress, IdentityToken: a.IdentityToken}
	}
	return m.pulls.do(ctx, norm, auth, opts.Progress)
}

// ensureImage returns the local image ref, pulling it through the shared
// pull path when pull is set. A malformed ref is ErrInvalid; a missing image
// without pull is ErrImageNotFound saying to pull it first.
func (m *Manager) ensureImage(ctx context.Context, ref string, pull bool) (engine.Image, error) {
	target, err := imageTarget(ref)
	if err != nil {
		return engine.Image{}, err
	}
	if m.onKubernetes() {
		// The kubelet pulls by the sandbox's pull policy; a missing image
		// fails the start (ErrImageNotFound). Its configuration is not
		// known here.
		return engine.Image{ID: target, RepoTags: []string{target}}, nil
	}
	img, err := m.engine.ImageInspect(ctx, target)
	if err == nil {
		return img, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return engine.Image{}, fmt.Errorf("image %q: %w", ref, err)
	}
	if !pull {
		return engine.Image{}, fmt.Errorf("image %q not found locally: pull it first (POST /v1/images/pull, Manager.PullImage) or ask Create to (PullMissing): %w", ref, err)
	}
	norm, perr := ParseReference(ref)
	if perr != nil {
		return engine.Image{}, fmt.Errorf("image %q is not present locally and an image id cannot be pulled: %w", ref, err)
	}
	if _, err := m.pulls.do(ctx, norm, nil, nil); err != nil {
		return engine.Image{}, err
	}
	img, err = m.engine.ImageInspect(ctx, norm)
	if err != nil {
		return engine.Image{}, fmt.Errorf("image %q: %w", ref, err)
	}
	return img, nil
}
