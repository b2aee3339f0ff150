package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opensbx/opensbx"
)

// filePath returns the "path" query parameter, checked by checkPath.
func filePath(r *http.Request) (string, error) {
	p := r.URL.Query().Get("path")
	return p, checkPath(p)
}

// checkPath requires a non-empty absolute path. The path is passed on
// literally: quotes, spaces, "$()" and ".." are never interpreted by a
// shell.
func checkPath(p string) error {
	if p == "" {
		return badRequest(`"path" is required`)
	}
	if !strings.HasPrefix(p, "/") {
		return badRequest(`"path" must be absolute, got ` + strconv.Quote(p))
	}
	return nil
}

// fileMode returns the optional octal "mode" query parameter (0 = the
// library's default).
func fileMode(r *http.Request) (fs.FileMode, error) {
	return parseMode(r.URL.Query().Get("mode"))
}

// parseMode reads octal permissions such as "0755" ("" = 0, the library's
// default 0644).
func parseMode(v string) (fs.FileMode, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, badRequest(`"mode" must be octal permissions like 0644, got ` + strconv.Quote(v))
	}
	return fs.FileMode(n), nil
}

// wantsRaw reports whether the client asked for raw bytes.
func wantsRaw(h string) bool {
	for _, part := range strings.Split(h, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && mt == "application/octet-stream" {
			return true
		}
	}
	return false
}

type fileResponse struct {
	Path     string `json:"path"`
	Content  string `json:"content"`
	Encoding string `json:"encoding,omitempty"`
	Size     int64  `json:"size"`
	Mode     string `json:"mode,omitempty"`
}

// fileView is the JSON answer for a file read: its content as text, or
// base64 with "encoding" when it is not valid UTF-8.
func fileView(p string, data []byte, info opensbx.FileInfo) fileResponse {
	out := fileResponse{Path: p, Size: int64(len(data)), Mode: "0" + strconv.FormatUint(uint64(info.Mode.Perm()), 8)}
	if utf8.Valid(data) {
		out.Content = string(data)
	} else {
		out.Content, out.Encoding = base64.StdEncoding.EncodeToString(data), "base64"
	}
	return out
}

func notAFile(p string) error { return badRequest(strconv.Quote(p) + " is a directory, not a file") }

// handleFileRead answers {"path","content"} (base64 with "encoding" when the
// file is not UTF-8), or the raw bytes with Accept: application/octet-stream.
func (s *server) handleFileRead() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := filePath(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		id := r.PathValue("id")
		if wantsRaw(r.Header.Get("Accept")) {
			rc, info, err := s.m.OpenFile(r.Context(), id, p)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			defer rc.Close()
			if info.Type == opensbx.FileTypeDir {
				s.fail(w, r, notAFile(p))
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
			w.Header().Set("X-File-Mode", "0"+strconv.FormatUint(uint64(info.Mode.Perm()), 8))
			w.WriteHeader(http.StatusOK)
			io.Copy(w, rc)
			return
		}
		data, info, err := s.m.ReadFile(r.Context(), id, p)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if info.Type == opensbx.FileTypeDir {
			s.fail(w, r, notAFile(p))
			return
		}
		encode(w, http.StatusOK, fileView(p, data, info))
	})
}

// writeRequest is the JSON body of PUT .../files (and part of the
// file_write tool's arguments).
type writeRequest struct {
	Content  *string `json:"content" jsonschema:"the file's content: text, or base64 when encoding is \"base64\" (use that for binary data); \"\" writes an empty file"`
	Encoding string  `json:"encoding,omitempty" jsonschema:"\"base64\" when content is base64-encoded binary data; absent for UTF-8 text"`
}

// data returns the bytes to write: content as text, or decoded from base64;
// over limit is 413.
func (req writeRequest) data(limit int64) ([]byte, error) {
	if req.Content == nil {
		return nil, badRequest(`"content" is required (use "" for an empty file)`)
	}
	var data []byte
	switch req.Encoding {
	case "", "utf-8", "utf8", "text":
		data = []byte(*req.Content)
	case "base64":
		var err error
		data, err = base64.StdEncoding.DecodeString(*req.Content)
		if err != nil {
			return nil, badRequest(`"content" is not valid base64: ` + err.Error())
		}
	default:
		return nil, badRequest(`"encoding" must be "base64" or absent, got ` + strconv.Quote(req.Encoding))
	}
	if int64(len(data)) > limit {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: codeTooLarge, message: "file is over the limit of " + itoa(limit) + " bytes"}
	}
	return data, nil
}

// rawWriteRequest is writeRequest with the content kept as raw JSON, so
// that a large file is not copied more than it must be: a text without
// escapes is written from the request's own bytes, base64 is decoded from
// them straight.
type rawWriteRequest struct {
	Content  json.RawMessage `json:"content"`
	Encoding string          `json:"encoding"`
}

func (req rawWriteRequest) data(limit int64) ([]byte, error) {
	raw := req.Content
	if len(raw) == 0 || string(raw) == "null" {
		return writeRequest{Encoding: req.Encoding}.data(limit) // the same message
	}
	if raw[0] != '"' {
		return nil, badRequest(`wrong type for content: want a JSON string`)
	}
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') >= 0 || !utf8.Valid(body) {
		// Escapes (or bytes JSON text cannot carry): let the JSON decoder
		// undo them, as for any other string.
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, badRequest("malformed JSON content: " + err.Error())
		}
		return writeRequest{Content: &s, Encoding: req.Encoding}.data(limit)
	}
	var data []byte
	switch req.Encoding {
	case "", "utf-8", "utf8", "text":
		data = body
	case "base64":
		data = make([]byte, base64.StdEncoding.DecodedLen(len(body)))
		n, err := base64.StdEncoding.Decode(data, body)
		if err != nil {
			return nil, badRequest(`"content" is not valid base64: ` + err.Error())
		}
		data = data[:n]
	default:
		return writeRequest{Content: new(string), Encoding: req.Encoding}.data(limit)
	}
	if int64(len(data)) > limit {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: codeTooLarge, message: "file is over the limit of " + itoa(limit) + " bytes"}
	}
	return data, nil
}

type writeResponse struct {
	Path   string `json:"path"`
	Status string `json:"status"`
	Size   int64  `json:"size"`
}

// handleFileWrite writes a file, creating parent directories: a JSON body
// {"content","encoding"?:"base64"} or, with Content-Type
// application/octet-stream, the raw body. Over the file size limit is 413.
func (s *server) handleFileWrite() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := filePath(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		mode, err := fileMode(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		id, limit := r.PathValue("id"), s.m.FileSizeLimit()
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if ct == "application/octet-stream" {
			if r.ContentLength > limit {
				s.fail(w, r, &http.MaxBytesError{Limit: limit})
				return
			}
			body := http.MaxBytesReader(w, r.Body, limit)
			cr := &countingReader{r: body}
			if err := s.m.WriteFileFrom(r.Context(), id, p, cr, r.ContentLength, mode); err != nil {
				s.fail(w, r, err)
				return
			}
			encode(w, http.StatusOK, writeResponse{Path: p, Status: "written", Size: cr.n})
			return
		}
		// JSON: base64 makes content up to 4/3 larger, plus some room for
		// escapes and the envelope.
		var req rawWriteRequest
		if err := decode(w, r, limit/3*4+s.maxBody, &req); err != nil {
			s.fail(w, r, err)
			return
		}
		data, err := req.data(limit)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if err := s.m.WriteFile(r.Context(), id, p, data, mode); err != nil {
			s.fail(w, r, err)
			return
		}
		encode(w, http.StatusOK, writeResponse{Path: p, Status: "written", Size: int64(len(data))})
	})
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// handleFileDelete removes a file or a directory tree: 204.
func (s *server) handleFileDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := filePath(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if err := s.m.DeleteFile(r.Context(), r.PathValue("id"), p); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// entryView is one directory entry; mode is ls-style ("-rw-r--r--") and
// mod_time RFC 3339.
type entryView struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Size       int64  `json:"size"`
	Mode       string `json:"mode"`
	ModTime    string `json:"mod_time"`
	LinkTarget string `json:"link_target,omitempty"`
}

type listDirResponse struct {
	Path    string      `json:"path"`
	Output  string      `json:"output"`
	Entries []entryView `json:"entries"`
}

func listDirOf(p string, infos []opensbx.FileInfo) listDirResponse {
	out := listDirResponse{Path: p, Output: opensbx.FormatListing(infos), Entries: make([]entryView, 0, len(infos))}
	for _, fi := range infos {
		out.Entries = append(out.Entries, entryView{
			Name: fi.Name, Type: string(fi.Type), Size: fi.Size, Mode: fi.Mode.String(),
			ModTime: fi.ModTime.UTC().Format(time.RFC3339), LinkTarget: fi.LinkTarget,
		})
	}
	return out
}

// handleFileList lists a directory: ls -la style text and structured
// entries.
func (s *server) handleFileList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := filePath(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		infos, err := s.m.ListDir(r.Context(), r.PathValue("id"), p)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		encode(w, http.StatusOK, listDirOf(p, infos))
	})
}
