package preview

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testKey  = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210fedcba9876543210")
)

func TestToken(t *testing.T) {
	s, o := signer{testKey}, signer{otherKey}
	id := strings.Repeat("ab", 32)
	tok := s.token(id)
	for _, c := range []struct {
		what string
		got  bool
		want bool
	}{
		{"stable", s.token(id) == tok, true},
		{"prefixed", strings.HasPrefix(tok, tokenPrefix), true},
		{"fixed length", len(tok) == len(tokenPrefix)+43, true},
		{"checks", s.checkToken(id, tok), true},
		{"another id", s.checkToken(strings.Repeat("cd", 32), tok), false},
		{"another key", o.checkToken(id, tok), false},
		{"differs by key", o.token(id) == tok, false},
		{"truncated", s.checkToken(id, tok[:len(tok)-1]), false},
		{"extended", s.checkToken(id, tok+"A"), false},
		{"empty", s.checkToken(id, ""), false},
		{"case changed", s.checkToken(id, strings.ToUpper(tok)), false},
		{"a link is no token", s.checkToken(id, s.stamp(purposeLink, id, time.Now().Add(time.Hour))), false},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v", c.what, c.got)
		}
	}
}

func TestStamp(t *testing.T) {
	s := signer{testKey}
	id := "4f1c0ffee"
	now := time.Unix(1_800_000_000, 0)
	link := s.stamp(purposeLink, id, now.Add(time.Hour))
	flip := func(v string, i int) string {
		b := []byte(v)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for _, c := range []struct {
		what    string
		purpose string
		id      string
		v       string
		at      time.Time
		want    stampResult
	}{
		{"valid", purposeLink, id, link, now, stampValid},
		{"just before expiry", purposeLink, id, link, now.Add(time.Hour - time.Second), stampValid},
		{"at expiry", purposeLink, id, link, now.Add(time.Hour), stampExpired},
		{"after expiry", purposeLink, id, link, now.Add(48 * time.Hour), stampExpired},
		{"other id", purposeLink, "4f1c0ffef", link, now, stampInvalid},
		{"other purpose", purposeCookie, id, link, now, stampInvalid},
		{"other key", purposeLink, id, signer{otherKey}.stamp(purposeLink, id, now.Add(time.Hour)), now, stampInvalid},
		{"expiry moved", purposeLink, id, "1900000000" + link[strings.IndexByte(link, '.'):], now, stampInvalid},
		{"signature flipped", purposeLink, id, flip(link, len(link)-5), now, stampInvalid},
		{"last character flipped", purposeLink, id, flip(link, len(link)-1), now, stampInvalid},
		{"no dot", purposeLink, id, strings.Replace(link, ".", "", 1), now, stampInvalid},
		{"empty", purposeLink, id, "", now, stampInvalid},
		{"dot only", purposeLink, id, ".", now, stampInvalid},
		{"leading zero", purposeLink, id, "0" + link, now, stampInvalid},
		{"sign", purposeLink, id, "+" + link, now, stampInvalid},
		{"padding", purposeLink, id, link + "=", now, stampInvalid},
		{"too long", purposeLink, id, link + strings.Repeat("A", 100), now, stampInvalid},
		{"a token is no link", purposeLink, id, s.token(id), now, stampInvalid},
	} {
		if got := s.verifyStamp(c.purpose, c.id, c.v, c.at); got != c.want {
			t.Errorf("%s: verifyStamp = %v, want %v", c.what, got, c.want)
		}
	}
}

// FuzzVerifyStamp checks that the link verifier never panics and accepts
// nothing but the values the signer made.
func FuzzVerifyStamp(f *testing.F) {
	s := signer{testKey}
	id := "sandbox-id"
	now := time.Unix(1_800_000_000, 0)
	f.Add(s.stamp(purposeLink, id, now.Add(time.Hour)))
	f.Add(s.stamp(purposeLink, id, now.Add(-time.Hour)))
	f.Add("1800003600.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("")
	f.Add("99999999999999999999.x")
	f.Fuzz(func(t *testing.T, v string) {
		got := s.verifyStamp(purposeLink, id, v, now)
		if got == stampInvalid {
			return
		}
		// Accepted: it must be exactly what the signer writes for its
		// expiry.
		es, _, _ := strings.Cut(v, ".")
		exp := time.Unix(int64(atoi64(es)), 0)
		if want := s.stamp(purposeLink, id, exp); v != want {
			t.Fatalf("accepted %q, which the signer writes as %q", v, want)
		}
		if (got == stampValid) != now.Before(exp) {
			t.Fatalf("%q: result %v at %v", v, got, now)
		}
	})
}

func atoi64(s string) int64 {
	var n int64
	for _, c := range s {
		n = n*10 + int64(c-'0')
	}
	return n
}

func TestLoadOrCreateSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "preview-secret")
	key, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 64 {
		t.Errorf("key is %d bytes, want 64 hex characters", len(key))
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, mode %v", err, st.Mode())
	}
	again, err := LoadOrCreateSecret(path)
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("second load: %v, same key %v", err, bytes.Equal(again, key))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state dir holds %d files, want only the secret", len(entries))
	}

	// Refused: readable by others, too short, a directory.
	os.Chmod(path, 0o644)
	if _, err := LoadOrCreateSecret(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("mode 0644: %v", err)
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("  tooshort \n"), 0o600)
	if _, err := LoadOrCreateSecret(short); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := LoadOrCreateSecret(dir); err == nil {
		t.Error("a directory accepted")
	}
	// A secret written by hand is used as is, white space trimmed.
	own := filepath.Join(dir, "own")
	os.WriteFile(own, []byte(" "+string(testKey)+"\n"), 0o600)
	if k, err := LoadOrCreateSecret(own); err != nil || !bytes.Equal(k, testKey) {
		t.Errorf("own secret: %q, %v", k, err)
	}
}

func TestLoadOrCreateSecretConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "preview-secret")
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := LoadOrCreateSecret(path)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) {
			t.Fatal("concurrent starts got different secrets")
		}
	}
}
