// Package image writes the agent image: a one-layer image, FROM scratch,
// holding the embedded opensbx-agent program at /opensbx-agent. Kubernetes
// sandboxes get the agent from it (an init container runs
// `/opensbx-agent install`), since a cluster has no engine volume the
// Manager could fill. The archive is in the format of `docker save`, which
// `docker load`, `ctr images import` and `podman load` all read, so the
// image can be loaded into a node or pushed to the cluster's registry
// without building anything.
package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/opensbx/opensbx/internal/agent/bin"
)

// Repository is the image name the agent image is tagged with.
const Repository = "opensbx-agent"

// Ref returns the reference of the agent image for arch ("amd64",
// "arm64"): Repository tagged with the first 16 hex digits of the agent's
// version, so that a new agent never runs under an old image's tag.
func Ref(arch string) (string, error) {
	v, err := bin.Version(arch)
	if err != nil {
		return "", err
	}
	return Repository + ":" + v[:16], nil
}

// epoch is the time stamped on the image: fixed, so that the archive of a
// given agent is the same bytes on every machine.
var epoch = time.Unix(0, 0).UTC()

// WriteArchive writes the agent image for arch, tagged ref (Ref when
// empty), to w as a `docker save` archive.
func WriteArchive(w io.Writer, arch, ref string) error {
	program, err := bin.Binary(arch)
	if err != nil {
		return err
	}
	if ref == "" {
		if ref, err = Ref(arch); err != nil {
			return err
		}
	}
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	if err := lw.WriteHeader(&tar.Header{Name: "opensbx-agent", Mode: 0o755, Size: int64(len(program)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return err
	}
	if _, err := lw.Write(program); err != nil {
		return err
	}
	if err := lw.Close(); err != nil {
		return err
	}
	layerSum := sha256.Sum256(layer.Bytes())
	layerID := hex.EncodeToString(layerSum[:])
	config, err := json.Marshal(map[string]any{
		"architecture": arch,
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint": []string{"/opensbx-agent"},
			"Labels":     map[string]string{"org.opensbx.managed": "true", "org.opensbx.agent-image": "true"},
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerID}},
		"history": []map[string]string{{"created": epoch.Format(time.RFC3339), "created_by": "opensbx agent image"}},
	})
	if err != nil {
		return err
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   configName,
		"RepoTags": []string{ref},
		"Layers":   []string{layerID + "/layer.tar"},
	}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{
		{configName, config},
		{layerID + "/layer.tar", layer.Bytes()},
		{"manifest.json", manifest},
	}
	if err := tw.WriteHeader(&tar.Header{Name: layerID + "/", Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir}); err != nil {
		return err
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return fmt.Errorf("agent image: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("agent image: %w", err)
		}
	}
	return tw.Close()
}
