package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// daemonGrace is how long a daemon gets between SIGTERM and SIGKILL.
const daemonGrace = 10 * time.Second

// Down stops the cluster and restores the host as the state file recorded
// it before up. It works after a failed or partial up and does nothing
// when no cluster is up, so running it twice is safe. When a step fails it
// still does the others, keeps the state file (so Down can run again) and
// returns every error.
func (c *Cluster) Down(ctx context.Context) error {
	l := c.Layout
	if os.Geteuid() != 0 {
		return errors.New("down: must run as root")
	}
	unlock, err := lock(ctx, l.LockFile, func() { c.logf("waiting for another kubecluster command (%s)", l.LockFile) })
	if err != nil {
		return err
	}
	defer unlock()
	st, err := loadState(l.StateFile())
	if errors.Is(err, errNoState) {
		c.logf("no cluster is up (no %s)", l.StateFile())
		os.Remove(l.LockFile)
		return nil
	}
	if err != nil {
		return err
	}
	start := time.Now()
	if err := c.down(ctx, st); err != nil {
		return err
	}
	os.Remove(l.LockFile) // still held: lock checks it locked the file at the path
	c.logf("down in %s", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// down does Down's work for st (also after a failed up, whose lock it
// holds).
func (c *Cluster) down(ctx context.Context, st *State) error {
	l := st.Layout
	var errs []error
	fail := func(err error) {
		if err != nil {
			c.logf("%v", err)
			errs = append(errs, err)
		}
	}

	// 1. The Kubernetes daemons, newest first, so that the kubelet starts
	// no pod while containerd's are removed.
	var containerd *Proc
	for i := len(st.Procs) - 1; i >= 0; i-- {
		p := st.Procs[i]
		if p.Name == daemonContainerd {
			containerd = &st.Procs[i]
			continue
		}
		fail(p.stop(daemonGrace))
	}

	// 2. The pods' containers, through the cluster's containerd.
	if containerd != nil && containerd.alive() {
		fail(c.removeContainers(ctx, l))
		fail(containerd.stop(daemonGrace))
	}

	// 3. Whatever of the pods still runs: shims of our containerd (they
	// outlive it) and processes in the kubepods cgroups.
	if pids := shimsOf(l.ContainerdSocket()); len(pids) > 0 {
		c.logf("killing leftover shims %v", pids)
		killAll(pids)
	}
	if pids := cgroupPIDs("kubepods"); len(pids) > 0 {
		c.logf("killing leftover pod processes %v", pids)
		killAll(pids)
	}

	// 4. Mounts: the kubelet's volumes, containerd's rootfs and shm
	// mounts, and the pods' network namespaces.
	mountDirs := []string{kubeletRootDir, l.StateDir, l.RunDir}
	for _, hd := range st.HostDirs {
		if hd.Path != "/run/netns" {
			continue
		}
		now, _, _ := listTree(hd.Path)
		for _, e := range newEntries(hd.Entries, now) {
			mountDirs = append(mountDirs, filepath.Join(hd.Path, e))
		}
	}
	fail(unmountUnder(mountDirs))

	// 5. The CNI bridge (the pods' veths went with their namespaces).
	if !st.BridgeExisted && linkExists(l.Bridge) {
		if _, err := output(ctx, 30*time.Second, "ip", "link", "delete", l.Bridge); err != nil {
			fail(fmt.Errorf("delete bridge: %w", err))
		}
	}

	// 6. The kubepods cgroups.
	fail(removeCgroup("kubepods"))

	// 7. iptables: only owned chains and rules that appeared.
	for prog, before := range st.IptablesBefore {
		fail(c.restoreIptables(ctx, prog, before))
	}

	// 8. Sysctls.
	for _, name := range slices.Sorted(maps.Keys(st.Sysctls)) {
		want := st.Sysctls[name]
		if now, err := readSysctl(name); err == nil && now != want {
			c.logf("sysctl %s: %s -> %s", name, now, want)
			fail(writeSysctl(name, want))
		}
	}

	// 9. Host directories.
	for _, hd := range st.HostDirs {
		fail(restoreDir(hd))
	}

	// 10. Our own directories, the state file last.
	if len(errs) > 0 {
		st.Phase = phaseDownFail
		if err := st.save(); err != nil {
			errs = append(errs, err)
		}
		return fmt.Errorf("down: %w", errors.Join(errs...))
	}
	for _, d := range []string{l.RunDir, l.StateDir} {
		if mountedUnder(d) {
			return fmt.Errorf("down: %s still has mounts", d)
		}
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("down: %w", err)
		}
	}
	return nil
}

// removeContainers kills and deletes every task and container in the CRI
// namespace of the cluster's containerd (the kubelet is stopped already).
// A task or container that went away meanwhile is not an error.
func (c *Cluster) removeContainers(ctx context.Context, l Layout) error {
	cc := &Cluster{Layout: l, Log: c.Log}
	list := func(what string) ([]string, error) {
		out, err := cc.ctr(ctx, what, "list", "--quiet")
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", what, err)
		}
		return strings.Fields(out), nil
	}
	tasks, err := list("tasks")
	if err != nil {
		return err
	}
	failed := map[string]error{}
	for _, id := range tasks {
		if _, err := cc.ctr(ctx, "tasks", "delete", "--force", id); err != nil {
			failed[id] = err
		}
	}
	containers, err := list("containers")
	if err != nil {
		return err
	}
	if len(containers) > 0 {
		c.logf("removing %d containers", len(containers))
		for _, id := range containers {
			if _, err := cc.ctr(ctx, "containers", "delete", id); err != nil {
				failed[id] = err
			}
		}
	}
	if len(failed) == 0 {
		return nil
	}
	// Only what is still there failed.
	tasks, err = list("tasks")
	if err != nil {
		return err
	}
	containers, err = list("containers")
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range append(tasks, containers...) {
		if err := failed[id]; err != nil {
			errs = append(errs, err)
			delete(failed, id)
		}
	}
	return errors.Join(errs...)
}

// restoreIptables removes the owned chains and rules that appeared since
// before (one program's output: iptables-save or ip6tables-save).
func (c *Cluster) restoreIptables(ctx context.Context, saveProg, before string) error {
	prog := strings.TrimSuffix(saveProg, "-save")
	now, err := output(ctx, 30*time.Second, saveProg)
	if err != nil {
		return err
	}
	cmds, err := iptablesCleanup(before, now)
	if err != nil {
		return fmt.Errorf("%s: %w", prog, err)
	}
	var errs []error
	for _, args := range cmds {
		if _, err := output(ctx, 30*time.Second, prog, append([]string{"-w", "5"}, args...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if len(cmds) > 0 {
		c.logf("%s: ran %d commands removing the kubelet's rules and chains", prog, len(cmds))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// iptables-nft made tables for the kubelet's chains (it cannot
	// delete them): delete those that are empty now, through netlink.
	if v, err := output(ctx, 30*time.Second, prog, "-V"); err != nil || !strings.Contains(v, "nf_tables") {
		return nil
	}
	if now, err = output(ctx, 30*time.Second, saveProg); err != nil {
		return err
	}
	tables, err := newEmptyTables(before, now)
	if err != nil {
		return fmt.Errorf("%s: %w", prog, err)
	}
	family := byte(nfprotoIPv4)
	if prog == "ip6tables" {
		family = nfprotoIPv6
	}
	for _, t := range tables {
		c.logf("%s: deleting the empty table %s it made", prog, t)
		if err := deleteNFTable(family, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// restoreDir brings a host directory back to hd: removed when it did not
// exist, otherwise stripped of every new path. It refuses while anything is
// mounted inside.
func restoreDir(hd HostDir) error {
	if _, err := os.Lstat(hd.Path); os.IsNotExist(err) {
		return nil
	}
	if mountedUnder(hd.Path) {
		return fmt.Errorf("restore %s: still has mounts", hd.Path)
	}
	if !hd.Existed {
		if err := os.RemoveAll(hd.Path); err != nil {
			return fmt.Errorf("restore %s: %w", hd.Path, err)
		}
		return nil
	}
	now, _, err := listTree(hd.Path)
	if err != nil {
		return fmt.Errorf("restore %s: %w", hd.Path, err)
	}
	var errs []error
	for _, e := range newEntries(hd.Entries, now) {
		if err := os.RemoveAll(filepath.Join(hd.Path, e)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
