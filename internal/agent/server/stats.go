//go:build linux

package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opensbx/opensbx/internal/agent/wire"
)

// maxCgroupFile bounds a read of one cgroup file.
const maxCgroupFile = 64 << 10

// unlimited is the smallest cgroup v1 limit taken to mean "no limit" (the
// kernel reports the largest page-aligned value).
const unlimited = 1 << 62

// readStats samples the sandbox's cgroup below root (the container's own
// cgroup as mounted at /sys/fs/cgroup): version 2 when root has
// cgroup.controllers, version 1 otherwise.
func readStats(root string) (wire.Stats, error) {
	s := wire.Stats{Time: time.Now()}
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		s.CgroupVersion = 2
		return s, statsV2(root, &s)
	}
	if _, err := os.Stat(filepath.Join(root, "memory")); err == nil {
		s.CgroupVersion = 1
		return s, statsV1(root, &s)
	}
	return s, newError(wire.CodeUnsupported, "no cgroup file system at %s", root)
}

func statsV2(root string, s *wire.Stats) error {
	var err error
	if s.MemoryUsage, err = readUint(filepath.Join(root, "memory.current")); err != nil {
		return err
	}
	if s.MemoryLimit, err = readLimit(filepath.Join(root, "memory.max")); err != nil {
		return err
	}
	if inactive, err := readKey(filepath.Join(root, "memory.stat"), "inactive_file"); err == nil && inactive < s.MemoryUsage {
		s.MemoryUsage -= inactive
	}
	usec, err := readKey(filepath.Join(root, "cpu.stat"), "usage_usec")
	if err != nil {
		return err
	}
	s.CPUUsage = usec * 1000
	if s.PIDs, err = readUint(filepath.Join(root, "pids.current")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if s.PIDsLimit, err = readLimit(filepath.Join(root, "pids.max")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func statsV1(root string, s *wire.Stats) error {
	var err error
	mem := filepath.Join(root, "memory")
	if s.MemoryUsage, err = readUint(filepath.Join(mem, "memory.usage_in_bytes")); err != nil {
		return err
	}
	if s.MemoryLimit, err = readLimit(filepath.Join(mem, "memory.limit_in_bytes")); err != nil {
		return err
	}
	if inactive, err := readKey(filepath.Join(mem, "memory.stat"), "total_inactive_file"); err == nil && inactive < s.MemoryUsage {
		s.MemoryUsage -= inactive
	}
	for _, dir := range []string{"cpuacct", "cpu,cpuacct", "cpuacct,cpu"} {
		if s.CPUUsage, err = readUint(filepath.Join(root, dir, "cpuacct.usage")); err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	if s.PIDs, err = readUint(filepath.Join(root, "pids", "pids.current")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if s.PIDsLimit, err = readLimit(filepath.Join(root, "pids", "pids.max")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func readSmall(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxCgroupFile))
}

func readUint(p string) (uint64, error) {
	b, err := readSmall(p)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", p, err)
	}
	return v, nil
}

// readLimit reads a limit: "max" or a huge value is 0 (no limit).
func readLimit(p string) (uint64, error) {
	b, err := readSmall(p)
	if err != nil {
		return 0, err
	}
	t := string(bytes.TrimSpace(b))
	if t == "max" {
		return 0, nil
	}
	v, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", p, err)
	}
	if v >= unlimited {
		return 0, nil
	}
	return v, nil
}

// readKey reads the value of key from a flat-keyed file ("key value" lines).
func readKey(p, key string) (uint64, error) {
	b, err := readSmall(p)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s: %w", p, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s: %w", p, key, fs.ErrNotExist)
}
