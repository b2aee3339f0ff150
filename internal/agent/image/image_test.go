package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"testing"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/agent/bin"
)

func TestWriteArchive(t *testing.T) {
	is := is.New(t)
	var a, b bytes.Buffer
	is.NoErr(WriteArchive(&a, "amd64", ""))
	is.NoErr(WriteArchive(&b, "amd64", ""))
	is.True(bytes.Equal(a.Bytes(), b.Bytes())) // reproducible
	if p := os.Getenv("OPENSBX_AGENT_IMAGE_OUT"); p != "" {
		is.NoErr(os.WriteFile(p, a.Bytes(), 0o644))
	}
	ref, err := Ref("amd64")
	is.NoErr(err)
	files := map[string][]byte{}
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		is.NoErr(err)
		data, err := io.ReadAll(tr)
		is.NoErr(err)
		files[h.Name] = data
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	is.NoErr(json.Unmarshal(files["manifest.json"], &manifest))
	is.Equal(len(manifest), 1)
	is.Equal(manifest[0].RepoTags, []string{ref})
	is.True(files[manifest[0].Config] != nil) // the config is in the archive
	layer := files[manifest[0].Layers[0]]
	lr := tar.NewReader(bytes.NewReader(layer))
	h, err := lr.Next()
	is.NoErr(err)
	is.Equal(h.Name, "opensbx-agent")
	is.Equal(h.Mode, int64(0o755))
	got, err := io.ReadAll(lr)
	is.NoErr(err)
	want, err := bin.Binary("amd64")
	is.NoErr(err)
	is.True(bytes.Equal(got, want)) // the embedded program
}

func TestWriteArchiveUnknownArch(t *testing.T) {
	is := is.New(t)
	is.True(WriteArchive(io.Discard, "mips", "") != nil)
}
