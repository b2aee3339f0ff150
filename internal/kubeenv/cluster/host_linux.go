package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sysctlPath is the /proc/sys file of a sysctl name.
func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile(sysctlPath(name))
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(name, value string) error {
	if err := os.WriteFile(sysctlPath(name), []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

// procStat returns a process's state letter and start time (clock ticks
// since boot) from /proc/PID/stat.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// pid (comm) state ppid ... : comm may hold anything, so cut at the
	// last ')'. After it, field 3 (state) is index 0 and field 22
	// (starttime) index 19.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return f[0][0], start, nil
}

// alive says whether p is still the process up started and not a zombie.
func (p Proc) alive() bool {
	if p.PID <= 0 {
		return false
	}
	state, start, err := procStat(p.PID)
	return err == nil && start == p.StartTicks && state != 'Z' && state != 'X'
}

// stop sends SIGTERM to p, waits up to grace for it to go, then SIGKILLs it.
// A process that is already gone is not an error.
func (p Proc) stop(grace time.Duration) error {
	if !p.alive() {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	if waitGone(p, grace) {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
	if waitGone(p, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("stop %s (pid %d): still running after SIGKILL", p.Name, p.PID)
}

func waitGone(p Proc, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for p.alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// procFor identifies a running process by PID.
func procFor(name string, pid int) (Proc, error) {
	_, start, err := procStat(pid)
	if err != nil {
		return Proc{}, fmt.Errorf("%s: %w", name, err)
	}
	return Proc{Name: name, PID: pid, StartTicks: start}, nil
}

// lock takes an exclusive flock on path, waiting while ctx allows. The
// returned func releases it.
func lock(ctx context.Context, path string, waiting func()) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			// down removes the lock file while it holds the lock: what
			// we locked may be that removed file, not the one at path.
			var held, now syscall.Stat_t
			if syscall.Fstat(int(f.Fd()), &held) == nil && syscall.Stat(path, &now) == nil &&
				held.Ino == now.Ino && held.Dev == now.Dev {
				return func() { f.Close() }, nil
			}
			f.Close()
			if f, err = os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600); err != nil {
				return nil, fmt.Errorf("lock: %w", err)
			}
			continue
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !told && waiting != nil {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readMounts() ([]mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	return parseMountinfo(string(b))
}

// unmountUnder unmounts everything mounted inside dirs, deepest first,
// lazily when a plain unmount fails, until nothing is left.
func unmountUnder(dirs []string) error {
	for round := 0; round < 5; round++ {
		ms, err := readMounts()
		if err != nil {
			return err
		}
		points := mountsToUnmount(ms, dirs)
		if len(points) == 0 {
			return nil
		}
		for _, p := range points {
			if err := syscall.Unmount(p, 0); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				_ = syscall.Unmount(p, syscall.MNT_DETACH)
			}
		}
	}
	ms, err := readMounts()
	if err != nil {
		return err
	}
	if left := mountsToUnmount(ms, dirs); len(left) > 0 {
		return fmt.Errorf("still mounted: %s", strings.Join(left, ", "))
	}
	return nil
}

// mountedUnder says whether anything is mounted inside dir.
func mountedUnder(dir string) bool {
	ms, err := readMounts()
	return err != nil || len(mountsToUnmount(ms, []string{dir})) > 0
}

// cgroupRoots are the mount points of every cgroup hierarchy.
func cgroupRoots() ([]string, error) {
	ms, err := readMounts()
	if err != nil {
		return nil, err
	}
	var roots []string
	for _, m := range ms {
		if m.FSType == "cgroup" || m.FSType == "cgroup2" {
			roots = append(roots, m.Point)
		}
	}
	return roots, nil
}

// cgroupPIDs lists the processes in the cgroup name (and below) of every
// hierarchy.
func cgroupPIDs(name string) []int {
	roots, _ := cgroupRoots()
	seen := map[int]bool{}
	var pids []int
	for _, r := range roots {
		dir := filepath.Join(r, name)
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// removeCgroup removes the cgroup name, children first, in every hierarchy.
func removeCgroup(name string) error {
	roots, err := cgroupRoots()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range roots {
		top := filepath.Join(r, name)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs) // children before parents
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// shimsOf lists containerd shims serving the containerd at socket.
func shimsOf(socket string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(argv) == 0 || !strings.HasPrefix(filepath.Base(argv[0]), "containerd-shim") {
			continue
		}
		if i := slices.Index(argv, "-address"); i >= 0 && i+1 < len(argv) && argv[i+1] == socket {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killAll SIGKILLs pids and waits up to 5 seconds for them to go.
func killAll(pids []int) {
	var procs []Proc
	for _, pid := range pids {
		if p, err := procFor("", pid); err == nil {
			procs = append(procs, p)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, p := range procs {
		waitGone(p, 5*time.Second)
	}
}

// linkExists says whether a network interface exists.
func linkExists(name string) bool {
	_, err := os.Lstat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// portFree says whether a TCP port on 127.0.0.1 can be listened on.
func portFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// output runs a program and returns its stdout; on failure the error
// carries stderr.
func output(ctx context.Context, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr tailBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}
