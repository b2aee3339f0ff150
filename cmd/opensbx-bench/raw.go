package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	"github.com/docker/go-units"
	"github.com/opensbx/opensbx"
)

// The raw side: the same work as the Manager's, in Docker SDK calls.

// Container settings the Manager gives every sandbox (see the root
// package's sandbox_policy.go and internal/engine/docker.go), repeated here
// for the raw side.
const (
	rawMemory    = 1024 << 20 // opensbx.DefaultMemoryMB
	rawNanoCPUs  = 1e9        // opensbx.DefaultCPUs
	rawPidsLimit = opensbx.DefaultPidsLimit
	rawNofile    = opensbx.DefaultNofile
	rawNetwork   = "opensbx"   // the Manager's isolated bridge, made by its New
	rawHostIP    = "127.0.0.1" // opensbx.DefaultHostIP
	rawStopSecs  = 10          // the Manager's default stop timeout
)

// rawKeepAlive is the Manager's keep-alive main process.
func rawKeepAlive() []string { return []string{"sleep", "2147483647"} }

// rawCaps are the capabilities the Manager keeps.
func rawCaps() []string {
	return []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"}
}

// rawName returns a container name no other container of the run has.
func (b *bench) rawName(kind string) string {
	return "opensbx-bench-" + b.cfg.id + "-" + kind + "-" + strconv.FormatInt(b.seq.Add(1), 10)
}

// rawSpec is the configuration the Manager uses for a busybox sandbox with
// one published port, with the run's labels instead of the Manager's.
func (b *bench) rawSpec() (*container.Config, *container.HostConfig) {
	labels := map[string]string{labelSide: "raw"}
	for k, v := range b.labels {
		labels[k] = v
	}
	p := nat.Port(port + "/tcp")
	init := true
	pids := int64(rawPidsLimit)
	cfg := &container.Config{
		Image:        image,
		Entrypoint:   rawKeepAlive()[:1],
		Cmd:          rawKeepAlive()[1:],
		Labels:       labels,
		ExposedPorts: nat.PortSet{p: {}},
	}
	host := &container.HostConfig{
		Init:         &init,
		PortBindings: nat.PortMap{p: {{HostIP: rawHostIP}}},
		Resources: container.Resources{
			Memory: rawMemory, MemorySwap: rawMemory, NanoCPUs: rawNanoCPUs, PidsLimit: &pids,
			Ulimits: []*units.Ulimit{{Name: "nofile", Soft: rawNofile, Hard: rawNofile}},
		},
		SecurityOpt: []string{"no-new-privileges:true"},
		CapDrop:     []string{"ALL"},
		CapAdd:      rawCaps(),
		NetworkMode: rawNetwork,
		LogConfig:   container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "1"}},
	}
	return cfg, host
}

// rawCreate creates, starts and inspects a container named name like a
// cold Create does, and returns its id. track gets the id as soon as the
// container exists, so that a failure later leaves nothing untracked.
func (b *bench) rawCreate(ctx context.Context, name string, track func(string)) (string, error) {
	cfg, host := b.rawSpec()
	resp, err := b.cli.ContainerCreate(ctx, cfg, host, nil, nil, name)
	if err != nil {
		return "", fmt.Errorf("raw create: %w", err)
	}
	track(resp.ID)
	if err := b.cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		return "", fmt.Errorf("raw start: %w", err)
	}
	if err := b.rawInspectRunning(ctx, resp.ID); err != nil {
		return "", err
	}
	return resp.ID, nil
}

// rawInspectRunning inspects id and checks that it runs with its port
// published, as a Manager's Create result reports.
func (b *bench) rawInspectRunning(ctx context.Context, id string) error {
	c, err := b.cli.ContainerInspect(ctx, id)
	if err != nil {
		return fmt.Errorf("raw inspect: %w", err)
	}
	if c.State == nil || !c.State.Running {
		return fmt.Errorf("raw container %.12s is not running", id)
	}
	if c.NetworkSettings == nil || len(c.NetworkSettings.Ports[nat.Port(port+"/tcp")]) == 0 {
		return fmt.Errorf("raw container %.12s has no published port", id)
	}
	return nil
}

// rawAdopt is the raw side of a pool hit: it renames a ready container
// and inspects it.
func (b *bench) rawAdopt(ctx context.Context, id string) error {
	if err := b.cli.ContainerRename(ctx, id, b.rawName("raw")); err != nil {
		return fmt.Errorf("raw rename: %w", err)
	}
	return b.rawInspectRunning(ctx, id)
}

// rawRemove force-removes a container; one already gone, or being removed,
// counts as removed.
func (b *bench) rawRemove(ctx context.Context, id string) error {
	err := b.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
		return fmt.Errorf("raw remove %.12s: %w", id, err)
	}
	return nil
}

// rawStop stops a container with the Manager's stop timeout and inspects
// it, as Manager.Stop returns the stopped sandbox.
func (b *bench) rawStop(ctx context.Context, id string) error {
	secs := rawStopSecs
	if err := b.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil {
		return fmt.Errorf("raw stop: %w", err)
	}
	c, err := b.cli.ContainerInspect(ctx, id)
	if err != nil {
		return fmt.Errorf("raw inspect: %w", err)
	}
	if c.State == nil || c.State.Running {
		return fmt.Errorf("raw container %.12s still runs after stop", id)
	}
	return nil
}

// maxRawOutput bounds what rawExec keeps of a command's output.
const maxRawOutput = 1 << 20

// rawExec runs argv in container id to completion without a TTY:
// exec create, attach, demultiplex the output to EOF, then inspect until
// the exec reports it has ended. A non-zero exit is an error. It returns
// the standard output (at most maxRawOutput bytes).
func (b *bench) rawExec(ctx context.Context, id string, argv ...string) (string, error) {
	created, err := b.cli.ContainerExecCreate(ctx, id, container.ExecOptions{
		Cmd: argv, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return "", fmt.Errorf("raw exec create: %w", err)
	}
	hj, err := b.cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return "", fmt.Errorf("raw exec attach: %w", err)
	}
	var stdout, stderr limitedBuffer
	stdout.max, stderr.max = maxRawOutput, maxRawOutput
	stop := context.AfterFunc(ctx, func() { hj.Close() })
	_, err = stdcopy.StdCopy(&stdout, &stderr, hj.Reader)
	stop()
	hj.Close()
	if err != nil {
		return "", fmt.Errorf("raw exec output: %w", err)
	}
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		ins, err := b.cli.ContainerExecInspect(ctx, created.ID)
		if err != nil {
			return "", fmt.Errorf("raw exec inspect: %w", err)
		}
		if !ins.Running {
			if ins.ExitCode != 0 {
				return "", fmt.Errorf("raw exec %q: exit code %d: %s", argv, ins.ExitCode, stderr.String())
			}
			return stdout.String(), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(wait):
		}
	}
}

// limitedBuffer keeps the first max bytes written to it and discards the
// rest.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.Len(); room > 0 {
		l.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// rawWriteRead writes data to file p in container id and reads it back
// with the archive calls: a one-entry tar built in memory to
// CopyToContainer into p's directory, then CopyFromContainer of p and the
// tar entry read to its end.
func (b *bench) rawWriteRead(ctx context.Context, id, p string, data []byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: path.Base(p), Mode: 0o644, Size: int64(len(data)),
		ModTime: time.Now(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := b.cli.CopyToContainer(ctx, id, path.Dir(p), &buf, container.CopyToContainerOptions{}); err != nil {
		return fmt.Errorf("raw copy to: %w", err)
	}
	rc, _, err := b.cli.CopyFromContainer(ctx, id, p)
	if err != nil {
		return fmt.Errorf("raw copy from: %w", err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	hdr, err := tr.Next()
	if err != nil {
		return fmt.Errorf("raw copy from: %w", err)
	}
	if hdr.Size != int64(len(data)) {
		return fmt.Errorf("raw read %s: %d bytes, want %d", p, hdr.Size, len(data))
	}
	got, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
	if err != nil {
		return fmt.Errorf("raw read %s: %w", p, err)
	}
	if !bytes.Equal(got, data) {
		return errors.New("raw read: the content differs from what was written")
	}
	return nil
}
