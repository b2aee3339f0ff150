package cluster

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// ManagedLabel marks what kubecluster made (the pause image).
const ManagedLabel = "org.opensbx.managed"

// imageEpoch is the fixed time in the pause image, so its digest depends on
// the program only.
var imageEpoch = time.Unix(0, 0).UTC()

// pauseImageTar builds a one-layer image in the format of `docker save`
// (which `ctr images import` reads): the static program at /pause as its
// entrypoint, tagged ref.
func pauseImageTar(program []byte, ref string) ([]byte, error) {
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	if err := lw.WriteHeader(&tar.Header{
		Name: "pause", Mode: 0o755, Size: int64(len(program)), ModTime: imageEpoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX,
	}); err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	if _, err := lw.Write(program); err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	if err := lw.Close(); err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	layerSum := sha256.Sum256(layer.Bytes())
	layerHex := hex.EncodeToString(layerSum[:])

	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      imageEpoch.Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint": []string{"/pause"},
			"Labels":     map[string]string{ManagedLabel: "true", ManagedLabel + ".tool": "kubecluster"},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerHex}},
	})
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	layerName := layerHex + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   configName,
		"RepoTags": []string{ref},
		"Layers":   []string{layerName},
	}})
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}

	var out bytes.Buffer
	w := tar.NewWriter(&out)
	files := []struct {
		name string
		data []byte
	}{
		{configName, config},
		{layerName, layer.Bytes()},
		{"manifest.json", manifest},
	}
	if err := w.WriteHeader(&tar.Header{Name: layerHex + "/", Mode: 0o755, ModTime: imageEpoch, Typeflag: tar.TypeDir}); err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: imageEpoch, Typeflag: tar.TypeReg}
		if err := w.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("pause image: %w", err)
		}
		if _, err := w.Write(f.data); err != nil {
			return nil, fmt.Errorf("pause image: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	return out.Bytes(), nil
}
