package preview

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// MinSecretBytes is the shortest secret WithSecret and LoadOrCreateSecret
// accept.
const MinSecretBytes = 32

// Purposes keep the three kinds of signed values apart: a token is never
// a valid link or cookie, and the other way round.
const (
	purposeToken  = "opensbx preview token v1"
	purposeLink   = "opensbx preview link v1"
	purposeCookie = "opensbx preview cookie v1"
)

// tokenPrefix marks preview tokens, so they are recognisable (and
// findable by secret scanners) wherever they end up.
const tokenPrefix = "sbxp_"

// maxStampLen bounds the signed link and cookie values verifyStamp looks
// at: 19 digits, a dot and 43 characters of base64.
const maxStampLen = 19 + 1 + 43

// signer makes and checks every signed value of the proxy with one key.
// All of them are HMAC-SHA256 over a purpose, the sandbox id and (for
// links and cookies) an expiry, so nothing needs to be stored: a value
// stays valid across restarts for as long as the key does.
type signer struct {
	key []byte
}

func (s signer) mac(purpose, id string, exp int64) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write(strconv.AppendInt(nil, exp, 10))
	return h.Sum(nil)
}

// token is the preview token of the sandbox with full id id.
func (s signer) token(id string) string {
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(s.mac(purposeToken, id, 0))
}

// checkToken reports, in constant time, whether got is id's token.
func (s signer) checkToken(id, got string) bool {
	return hmac.Equal([]byte(got), []byte(s.token(id)))
}

// stamp is a signed value for id that expires at exp: "<unix>.<mac>".
func (s signer) stamp(purpose, id string, exp time.Time) string {
	e := exp.Unix()
	return strconv.FormatInt(e, 10) + "." + base64.RawURLEncoding.EncodeToString(s.mac(purpose, id, e))
}

// stampResult is what verifyStamp found.
type stampResult int

const (
	stampInvalid stampResult = iota // malformed or not signed by this key for this id
	stampExpired                    // genuine, but its time has passed
	stampValid
)

// verifyStamp checks a value made by stamp for purpose and id at time now.
// The signature is compared in constant time and checked before the
// expiry, so "expired" is only ever said of genuine values.
func (s signer) verifyStamp(purpose, id, v string, now time.Time) stampResult {
	if len(v) > maxStampLen {
		return stampInvalid
	}
	es, sig, ok := strings.Cut(v, ".")
	if !ok || es == "" || len(es) > 19 || !allDigits(es) || (len(es) > 1 && es[0] == '0') {
		return stampInvalid
	}
	e, err := strconv.ParseInt(es, 10, 64)
	if err != nil {
		return stampInvalid
	}
	// The decoder skips '\r' and '\n': allow nothing but the alphabet, so
	// that every value has one spelling.
	if len(sig) != base64.RawURLEncoding.EncodedLen(sha256.Size) || !urlBase64(sig) {
		return stampInvalid
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return stampInvalid
	}
	if !hmac.Equal(got, s.mac(purpose, id, e)) {
		return stampInvalid
	}
	if now.Unix() >= e {
		return stampExpired
	}
	return stampValid
}

func urlBase64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// LoadOrCreateSecret returns the secret key kept in the file at path,
// creating the file (and its directory, mode 0700) with 32 random bytes in
// hex, mode 0600, when it does not exist. A file that others may read or
// write (any group or other permission bit) is refused, as is one shorter
// than MinSecretBytes after trimming white space. Creation is atomic: two
// servers starting on one state directory end up with the same secret.
//
// Keep the file as long as preview tokens and links should stay valid;
// deleting it (or writing a new secret) revokes every token and link.
func LoadOrCreateSecret(path string) ([]byte, error) {
	key, err := readSecret(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("preview secret: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("preview secret: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".preview-secret-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("preview secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(raw) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("preview secret: %w", err)
	}
	// A hard link publishes the complete file or fails if another process
	// got there first; then its secret wins.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("preview secret: %w", err)
	}
	return readSecret(path)
}

func readSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("preview secret: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("preview secret: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("preview secret %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("preview secret %s: mode %04o lets others read or write it; chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4097))
	if err != nil {
		return nil, fmt.Errorf("preview secret: %w", err)
	}
	if len(b) > 4096 {
		return nil, fmt.Errorf("preview secret %s: over 4096 bytes", path)
	}
	key := bytes.TrimSpace(b)
	if len(key) < MinSecretBytes {
		return nil, fmt.Errorf("preview secret %s: %d bytes, want at least %d", path, len(key), MinSecretBytes)
	}
	return key, nil
}
