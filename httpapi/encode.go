package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// encode writes v as a JSON response with the given status.
func encode(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client may be gone; nothing to do about it
}

// decode reads one JSON value from r's body (at most limit bytes) into v.
// Unknown fields are accepted; malformed JSON, wrong types, an empty body
// and anything after the value are 400; a body over limit is 413.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err)
		}
		return badRequest("malformed JSON: unexpected data after the request object")
	}
	return nil
}

// decodeOptional is decode for bodies that may be empty (v keeps its
// zero value then).
func decodeOptional(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	err := decode(w, r, limit, v)
	var ae *apiError
	if errors.As(err, &ae) && ae.message == msgEmptyBody {
		return nil
	}
	return err
}

const msgEmptyBody = "malformed JSON: the request body is empty"

func decodeError(err error) error {
	var mbe *http.MaxBytesError
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &mbe):
		return err
	case errors.Is(err, io.EOF):
		return badRequest(msgEmptyBody)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: unexpected end of the body")
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(body)"
		}
		return badRequest(fmt.Sprintf("wrong type for %s: got JSON %s, want %s", field, te.Value, te.Type))
	case errors.As(err, &se):
		return badRequest(fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se))
	default:
		return badRequest("malformed JSON: " + err.Error())
	}
}

// boolQuery parses a boolean query parameter; absent is false.
func boolQuery(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest(fmt.Sprintf("query parameter %s=%q: want true or false", name, v))
	}
	return b, nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
