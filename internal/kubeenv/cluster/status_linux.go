package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ErrNotUp means no cluster is up.
var ErrNotUp = errors.New("no cluster is up")

// Status writes what runs and whether the cluster is healthy to w. It
// returns ErrNotUp when no cluster is up and an error saying what is wrong
// when one is up but unhealthy.
func (c *Cluster) Status(ctx context.Context, w io.Writer) error {
	st, err := loadState(c.Layout.StateFile())
	if errors.Is(err, errNoState) {
		fmt.Fprintln(w, "cluster:    down")
		return ErrNotUp
	}
	if err != nil {
		return err
	}
	l := st.Layout
	fmt.Fprintf(w, "cluster:    %s since %s (Kubernetes %s)\n", st.Phase, st.StartedAt.Format(time.RFC3339), KubeVersion)
	fmt.Fprintf(w, "kubeconfig: %s\n", l.AdminKubeconfig())
	fmt.Fprintf(w, "containerd: %s (namespace %s)\n", l.ContainerdSocket(), ctrNS)
	fmt.Fprintf(w, "kubectl:    %s\n", l.Bin("kubectl"))
	fmt.Fprintf(w, "logs:       %s\n", l.LogDir)
	for _, p := range st.Procs {
		state := "running"
		if !p.alive() {
			state = "NOT RUNNING"
		}
		fmt.Fprintf(w, "  %-24s pid %-8d %s\n", p.Name, p.PID, state)
	}
	ok, why := c.healthy(ctx, st)
	if !ok {
		fmt.Fprintf(w, "health:     UNHEALTHY: %s\n", why)
		return fmt.Errorf("cluster unhealthy: %s", why)
	}
	fmt.Fprintf(w, "health:     node %s Ready\n", l.NodeName)
	return nil
}

// Import copies local Docker images into the cluster's containerd (docker
// save | ctr images import), where pods with imagePullPolicy Never find
// them. The cluster must be up.
func (c *Cluster) Import(ctx context.Context, images []string) error {
	if len(images) == 0 {
		return errors.New("import: no images")
	}
	st, err := loadState(c.Layout.StateFile())
	if errors.Is(err, errNoState) {
		return fmt.Errorf("import: %w", ErrNotUp)
	}
	if err != nil {
		return err
	}
	cc := &Cluster{Layout: st.Layout, Log: c.Log}
	if _, err := cc.ctr(ctx, "version"); err != nil {
		return fmt.Errorf("import: cluster containerd: %w", err)
	}
	docker := "/usr/bin/docker" // Debian's client: the one that matches the engine
	if _, err := os.Stat(docker); err != nil {
		docker = "docker"
	}
	start := time.Now()
	save := exec.CommandContext(ctx, docker, append([]string{"save"}, images...)...)
	var saveErr tailBuffer
	save.Stderr = &saveErr
	pipe, err := save.StdoutPipe()
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if err := save.Start(); err != nil {
		return fmt.Errorf("import: docker save: %w", err)
	}
	importErr := cc.ctrImport(ctx, pipe)
	pipe.Close()
	if err := save.Wait(); err != nil {
		return fmt.Errorf("import: docker save %s: %w: %s", strings.Join(images, " "), err, saveErr.String())
	}
	if importErr != nil {
		return fmt.Errorf("import: %w", importErr)
	}
	c.logf("imported %s in %s", strings.Join(images, " "), time.Since(start).Round(10*time.Millisecond))
	return nil
}
