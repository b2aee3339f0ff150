package httpapi

import (
	"net/http"
	"time"

	"github.com/opensbx/opensbx"
)

// imageView is the JSON form of a local image; created is RFC 3339.
type imageView struct {
	ID           string   `json:"id"`
	Tags         []string `json:"tags"`
	Digests      []string `json:"digests,omitempty"`
	Size         int64    `json:"size"`
	Created      string   `json:"created,omitempty"`
	Architecture string   `json:"architecture,omitempty"`
	OS           string   `json:"os,omitempty"`
	Sandboxes    []string `json:"sandboxes,omitempty"`
}

func imageOf(img opensbx.Image) imageView {
	v := imageView{ID: img.ID, Tags: img.Tags, Digests: img.Digests, Size: img.Size, Created: rfc3339(img.Created)}
	if v.Tags == nil {
		v.Tags = []string{}
	}
	return v
}

type imageListResponse struct {
	Images []imageView `json:"images"`
}

func imageListOf(imgs []opensbx.Image) imageListResponse {
	out := imageListResponse{Images: make([]imageView, 0, len(imgs))}
	for _, img := range imgs {
		out.Images = append(out.Images, imageOf(img))
	}
	return out
}

// imageDetailOf is the answer of GET /images/{ref}.
func imageDetailOf(d *opensbx.ImageDetail) imageView {
	v := imageOf(d.Image)
	v.Architecture, v.OS, v.Sandboxes = d.Architecture, d.OS, d.Sandboxes
	if v.Sandboxes == nil {
		v.Sandboxes = []string{}
	}
	return v
}

func (s *server) handleImageList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		imgs, err := s.m.Images(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		encode(w, http.StatusOK, imageListOf(imgs))
	})
}

// handleImageGet describes one image. {ref...} holds the whole rest of the
// path, so "127.0.0.1:5000/ns/img:1" works raw; path-escaped slashes
// ("%2F") are unescaped by the mux.
func (s *server) handleImageGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ref := r.PathValue("ref")
		if ref == "" {
			s.noRef(w, r)
			return
		}
		d, err := s.m.Image(r.Context(), ref)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		encode(w, http.StatusOK, imageDetailOf(d))
	})
}

// noRef answers /images/ with no reference after the slash: no such route.
func (s *server) noRef(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, http.StatusNotFound, codeNotFound, "no route for "+r.Method+" "+r.URL.Path+": give an image reference after /images/")
}

// handleImageDelete removes an image: 204; ?force=true removes it even when
// a stopped container uses it (see Manager.RemoveImage).
func (s *server) handleImageDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		force, err := boolQuery(r, "force")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		ref := r.PathValue("ref")
		if ref == "" {
			s.noRef(w, r)
			return
		}
		if err := s.m.RemoveImage(r.Context(), ref, force); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

type pullRequest struct {
	Image string `json:"image"`
	Auth  *struct {
		Username      string `json:"username"`
		Password      string `json:"password"`
		ServerAddress string `json:"server_address"`
		IdentityToken string `json:"identity_token"`
	} `json:"auth"`
}

// checkPullRef requires a well-formed reference to pull.
func checkPullRef(ref string) error {
	if ref == "" {
		return badRequest(`"image" is required`)
	}
	_, err := opensbx.ParseReference(ref)
	return err
}

type pullResponse struct {
	Status string `json:"status"`
	Image  string `json:"image"`
	ID     string `json:"id,omitempty"`
}

// pullError turns pull failures the library leaves unclassified (an
// unreachable registry, a broken layer: the engine's message) into 502
// REGISTRY_ERROR with that message, instead of an opaque 500.
func pullError(err error) error {
	if status, _, _ := classify(err); status == http.StatusInternalServerError {
		return &apiError{status: http.StatusBadGateway, code: codeRegistry, message: err.Error()}
	}
	return err
}

// handleImagePull pulls {"image"} (credentials in the optional "auth"
// object, never logged): 200 {"status":"pulled"} once it is local. With
// ?stream=true the answer is ND-JSON progress records ending with
// {"status":"pulled",...} or {"error":{code,message}}.
func (s *server) handleImagePull() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stream, err := boolQuery(r, "stream")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		var req pullRequest
		if err := decode(w, r, s.maxBody, &req); err != nil {
			s.fail(w, r, err)
			return
		}
		if err := checkPullRef(req.Image); err != nil {
			s.fail(w, r, err)
			return
		}
		var opts opensbx.PullOptions
		if a := req.Auth; a != nil {
			opts.Auth = &opensbx.RegistryAuth{Username: a.Username, Password: a.Password, ServerAddress: a.ServerAddress, IdentityToken: a.IdentityToken}
		}
		if !stream {
			img, err := s.m.PullImage(r.Context(), req.Image, opts)
			if err != nil {
				s.fail(w, r, pullError(err))
				return
			}
			encode(w, http.StatusOK, pullResponse{Status: "pulled", Image: req.Image, ID: img.ID})
			return
		}
		// Progress comes from the pull's goroutine; the records are written
		// from this one. A slow client loses progress records (never the
		// last one) instead of slowing the shared pull down.
		progress := make(chan opensbx.PullProgress, 256)
		opts.Progress = func(p opensbx.PullProgress) {
			select {
			case progress <- p:
			default:
			}
		}
		type result struct {
			img *opensbx.Image
			err error
		}
		done := make(chan result, 1)
		go func() {
			img, err := s.m.PullImage(r.Context(), req.Image, opts)
			done <- result{img, err}
		}()
		st := startNDJSON(w)
		tick := time.NewTicker(15 * time.Second) // keeps idle proxies from closing a slow pull
		defer tick.Stop()
		for {
			select {
			case p := <-progress:
				st.send(p)
			case <-tick.C:
				st.send(opensbx.PullProgress{Status: "waiting"})
			case res := <-done:
				for len(progress) > 0 {
					st.send(<-progress)
				}
				if res.err != nil {
					s.sendError(st, r, pullError(res.err))
					return
				}
				st.send(pullResponse{Status: "pulled", Image: req.Image, ID: res.img.ID})
				return
			}
		}
	})
}
