package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"
)

func TestStores(t *testing.T) {
	stores := map[string]func(t *testing.T) Store{
		"memory": func(*testing.T) Store { return NewMemory() },
		"bolt": func(t *testing.T) Store {
			s, err := OpenBolt(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			s := open(t)
			defer s.Close()
			_, ok, err := s.Get("b", "missing")
			is.NoErr(err)
			is.True(!ok) // missing key in missing bucket
			is.NoErr(s.Delete("nobucket", "k"))
			is.NoErr(s.ForEach("nobucket", func(string, []byte) error { return errors.New("called") }))

			is.NoErr(s.Put("b", "k2", []byte("two")))
			is.NoErr(s.Put("b", "k1", []byte("one")))
			is.NoErr(s.Put("b", "k1", []byte("uno"))) // replace
			is.NoErr(s.Put("other", "k1", []byte("x")))
			v, ok, err := s.Get("b", "k1")
			is.NoErr(err)
			is.True(ok)
			is.Equal(string(v), "uno")

			var keys []string
			is.NoErr(s.ForEach("b", func(k string, v []byte) error {
				keys = append(keys, k+"="+string(v))
				return nil
			}))
			is.Equal(strings.Join(keys, ","), "k1=uno,k2=two") // key order, one bucket only

			stop := errors.New("stop")
			is.Equal(s.ForEach("b", func(string, []byte) error { return stop }), stop) // callback error returned

			is.NoErr(s.Delete("b", "k1"))
			_, ok, err = s.Get("b", "k1")
			is.NoErr(err)
			is.True(!ok) // deleted
		})
	}
}

func TestBoltPersists(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	is.NoErr(err)
	is.NoErr(s.Put("b", "k", []byte("v")))
	is.NoErr(s.Close())
	s, err = OpenBolt(dir)
	is.NoErr(err)
	defer s.Close()
	v, ok, err := s.Get("b", "k")
	is.NoErr(err)
	is.True(ok) // survives reopening
	is.Equal(string(v), "v")
}

func TestBoltCorruptOrLocked(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	is.NoErr(os.WriteFile(filepath.Join(dir, FileName), []byte(strings.Repeat("garbage!", 4096)), 0o600))
	_, err := OpenBolt(dir)
	is.True(errors.Is(err, ErrCorrupt)) // garbage file

	truncated := t.TempDir()
	s, err := OpenBolt(truncated)
	is.NoErr(err)
	is.NoErr(s.Put("b", "k", []byte("v")))
	is.NoErr(s.Close())
	is.NoErr(os.Truncate(filepath.Join(truncated, FileName), 100))
	_, err = OpenBolt(truncated)
	is.True(err != nil) // truncated file is an error, not a panic

	locked := t.TempDir()
	s, err = OpenBolt(locked)
	is.NoErr(err)
	defer s.Close()
	_, err = OpenBolt(locked)
	is.True(err != nil) // second opener of one state dir
	is.True(strings.Contains(err.Error(), "locked"))
}
