package cluster

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"testing"
)

func TestPauseImageTar(t *testing.T) {
	tests := []struct {
		name    string
		program []byte
		ref     string
	}{
		{"small", []byte("\x7fELF fake program"), "localhost/opensbx/kube-pause:1"},
		{"empty", nil, "localhost/x:2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := pauseImageTar(tt.program, tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := pauseImageTar(tt.program, tt.ref)
			if !bytes.Equal(b, again) {
				t.Error("not reproducible")
			}
			files := untar(t, b)
			var manifest []struct {
				Config   string
				RepoTags []string
				Layers   []string
			}
			if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
				t.Fatal(err)
			}
			if len(manifest) != 1 || len(manifest[0].RepoTags) != 1 || manifest[0].RepoTags[0] != tt.ref || len(manifest[0].Layers) != 1 {
				t.Fatalf("manifest = %+v", manifest)
			}
			var config struct {
				Architecture, OS string
				Config           struct {
					Entrypoint []string
					Labels     map[string]string
				}
				RootFS struct {
					DiffIDs []string `json:"diff_ids"`
				}
			}
			if err := json.Unmarshal(files[manifest[0].Config], &config); err != nil {
				t.Fatal(err)
			}
			layer := files[manifest[0].Layers[0]]
			sum := sha256.Sum256(layer)
			if len(config.RootFS.DiffIDs) != 1 || config.RootFS.DiffIDs[0] != "sha256:"+hex.EncodeToString(sum[:]) {
				t.Errorf("diff_ids %v do not match the layer", config.RootFS.DiffIDs)
			}
			if config.Architecture != "amd64" || config.OS != "linux" || len(config.Config.Entrypoint) != 1 || config.Config.Entrypoint[0] != "/pause" {
				t.Errorf("config = %+v", config)
			}
			if config.Config.Labels[ManagedLabel] != "true" {
				t.Errorf("labels = %v", config.Config.Labels)
			}
			tr := tar.NewReader(bytes.NewReader(layer))
			hdr, err := tr.Next()
			if err != nil {
				t.Fatal(err)
			}
			content, _ := io.ReadAll(tr)
			if hdr.Name != "pause" || hdr.Mode != 0o755 || !bytes.Equal(content, tt.program) {
				t.Errorf("layer holds %s mode %o (%d bytes)", hdr.Name, hdr.Mode, len(content))
			}
		})
	}
}

func untar(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = data
	}
}
