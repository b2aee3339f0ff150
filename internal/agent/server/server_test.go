//go:build linux

package server

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/matryer/is"
)

func TestResolveUser(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	group := filepath.Join(dir, "group")
	os.WriteFile(passwd, []byte(strings.Join([]string{
		"root:x:0:0:root:/root:/bin/sh",
		"# a comment",
		"broken line",
		"badnum:x:abc:0::/:/bin/sh",
		"app:x:1000:1000:App:/home/app:/bin/sh",
		"nohome:x:1001:1001:::/bin/sh",
		"",
	}, "\n")), 0o644)
	os.WriteFile(group, []byte("root:x:0:\napp:x:1000:\ndev:x:2000:app,other\nops:x:3000:other\nbad:x:zz:app\n"), 0o644)
	for _, tc := range []struct {
		spec    string
		want    account
		wantErr string
	}{
		{"root", account{uid: 0, gid: 0, groups: []uint32{0}, home: "/root"}, ""},
		{"0", account{uid: 0, gid: 0, groups: []uint32{0}, home: "/root"}, ""},
		{"app", account{uid: 1000, gid: 1000, groups: []uint32{1000, 2000}, home: "/home/app"}, ""},
		{"1000", account{uid: 1000, gid: 1000, groups: []uint32{1000, 2000}, home: "/home/app"}, ""},
		{"app:ops", account{uid: 1000, gid: 3000, groups: []uint32{3000, 2000}, home: "/home/app"}, ""},
		{"app:4000", account{uid: 1000, gid: 4000, groups: []uint32{4000, 2000}, home: "/home/app"}, ""},
		{"4242", account{uid: 4242, gid: 0, home: "/"}, ""},
		{"4242:4343", account{uid: 4242, gid: 4343, home: "/"}, ""},
		{"4242:dev", account{uid: 4242, gid: 2000, home: "/"}, ""},
		{"nohome", account{uid: 1001, gid: 1001, groups: []uint32{1001}, home: "/"}, ""},
		{"ghost", account{}, "unable to find user ghost: no matching entries in passwd file"},
		{"badnum", account{}, "unable to find user badnum"},
		{"app:ghosts", account{}, "unable to find group ghosts: no matching entries in group file"},
		{":0", account{}, "invalid user"},
		{"app:", account{}, "invalid user"},
		{"-1", account{}, "invalid user"},
		{"1:-5", account{}, "invalid group"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := resolveUser(tc.spec, passwd, group)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	// Without the files (an image with no /etc): numeric users only.
	a, err := resolveUser("65534:65534", filepath.Join(dir, "none"), filepath.Join(dir, "none"))
	if err != nil || a.uid != 65534 || a.gid != 65534 || a.home != "/" {
		t.Fatalf("numeric user without passwd: %+v, %v", a, err)
	}
	if _, err := resolveUser("root", filepath.Join(dir, "none"), group); err == nil {
		t.Fatal("a name resolved without a passwd file")
	}
}

func TestParseProcStat(t *testing.T) {
	is := is.New(t)
	line := "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
	st, err := parseProcStat(1234, []byte(line))
	is.NoErr(err)
	is.Equal(st, procStat{pid: 1234, ppid: 1, pgrp: 1234, sid: 1234, state: 'S', start: 98765})
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) S a 1 1 " + strings.Repeat("0 ", 20), "1 (x) SS 1 1 1 " + strings.Repeat("0 ", 20)} {
		_, err := parseProcStat(1, []byte(bad))
		is.True(err != nil) // malformed
	}
	self, err := procFS("/proc").stat(os.Getpid())
	is.NoErr(err)
	is.Equal(self.pid, os.Getpid())
	is.Equal(self.ppid, os.Getppid())
}

func TestBuildEnv(t *testing.T) {
	is := is.New(t)
	got := buildEnv([]string{"PATH=/bin", "HOME=/root", "A=1"}, []string{"A=2", "B=", "A=3"}, "/home/u", "cmd_x")
	is.Equal(got, []string{"PATH=/bin", "HOME=/home/u", "A=3", "B=", CommandIDEnv + "=cmd_x"})
	got = buildEnv(nil, []string{"HOME=/given", CommandIDEnv + "=forged"}, "/home/u", "cmd_y")
	is.Equal(got, []string{"HOME=/given", CommandIDEnv + "=cmd_y"}) // the id cannot be forged
	is.Equal(envValue(got, "HOME"), "/given")
	is.Equal(envValue(got, "NOPE"), "")
}

func TestLookPath(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "data"), nil, 0o644)
	p, code, msg := lookPath("tool", "/nonexistent:"+bin, "")
	is.Equal(msg, "")
	is.Equal(code, 0)
	is.Equal(p, filepath.Join(bin, "tool"))
	_, code, msg = lookPath("data", bin, "")
	is.Equal(code, 127) // not executable: skipped in PATH
	is.Equal(msg, `exec: "data": executable file not found in $PATH`)
	p, _, msg = lookPath("bin/tool", "", dir)
	is.Equal(msg, "")
	is.Equal(p, filepath.Join(dir, "bin", "tool")) // relative to the cwd
	_, code, _ = lookPath("./bin/data", "", dir)
	is.Equal(code, 126)
	_, code, _ = lookPath(bin+"/", "", "")
	is.Equal(code, 126) // a directory
	_, code, _ = lookPath(bin+"/data/x", "", "")
	is.Equal(code, 127) // below a file
}

func TestStatsV2(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	files := map[string]string{
		"cgroup.controllers": "cpu memory pids\n",
		"memory.current":     "10485760\n",
		"memory.max":         "max\n",
		"memory.stat":        "anon 100\nfile 5000\ninactive_file 4096\nactive_file 1\n",
		"cpu.stat":           "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
		"pids.current":       "7\n",
		"pids.max":           "512\n",
	}
	for name, body := range files {
		os.WriteFile(filepath.Join(root, name), []byte(body), 0o644)
	}
	s, err := readStats(root)
	is.NoErr(err)
	is.Equal(s.CgroupVersion, 2)
	is.Equal(s.MemoryUsage, uint64(10485760-4096)) // inactive file cache excluded
	is.Equal(s.MemoryLimit, uint64(0))             // max: unlimited
	is.Equal(s.CPUUsage, uint64(1_500_000))        // ns
	is.Equal(s.PIDs, uint64(7))
	is.Equal(s.PIDsLimit, uint64(512))
	os.WriteFile(filepath.Join(root, "memory.max"), []byte("1073741824\n"), 0o644)
	s, err = readStats(root)
	is.NoErr(err)
	is.Equal(s.MemoryLimit, uint64(1<<30))
	os.WriteFile(filepath.Join(root, "cpu.stat"), []byte("user_usec 1\n"), 0o644)
	_, err = readStats(root)
	is.True(err != nil) // no usage_usec
}

func TestStatsV1(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	files := map[string]string{
		"memory/memory.usage_in_bytes": "20971520\n",
		"memory/memory.limit_in_bytes": "9223372036854771712\n",
		"memory/memory.stat":           "cache 1\ntotal_inactive_file 1048576\n",
		"cpu,cpuacct/cpuacct.usage":    "123456789\n",
		"pids/pids.current":            "3\n",
		"pids/pids.max":                "max\n",
	}
	for name, body := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755)
		os.WriteFile(filepath.Join(root, name), []byte(body), 0o644)
	}
	s, err := readStats(root)
	is.NoErr(err)
	is.Equal(s.CgroupVersion, 1)
	is.Equal(s.MemoryUsage, uint64(20971520-1048576))
	is.Equal(s.MemoryLimit, uint64(0)) // the kernel's "no limit"
	is.Equal(s.CPUUsage, uint64(123456789))
	is.Equal(s.PIDs, uint64(3))
	is.Equal(s.PIDsLimit, uint64(0))

	_, err = readStats(t.TempDir())
	is.True(err != nil) // no cgroup file system
}
