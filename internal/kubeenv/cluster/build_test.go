package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildHash(t *testing.T) {
	base := buildHash([]byte("mod"), []byte("sum"))
	tests := []struct {
		name       string
		mod, sum   string
		wantChange bool
	}{
		{"same", "mod", "sum", false},
		{"go.mod changed", "mod2", "sum", true},
		{"go.sum changed", "mod", "sum2", true},
		{"bytes moved between the files", "mods", "um", true},
	}
	for _, tt := range tests {
		if changed := buildHash([]byte(tt.mod), []byte(tt.sum)) != base; changed != tt.wantChange {
			t.Errorf("%s: changed=%v, want %v", tt.name, changed, tt.wantChange)
		}
	}
}

func TestBinariesCurrent(t *testing.T) {
	l := testLayout(t)
	write := func(path string, data string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	if binariesCurrent(l, "h") {
		t.Fatal("empty cache is current")
	}
	for _, b := range kubeBinaries {
		write(l.Bin(b), "bin", 0o755)
	}
	if binariesCurrent(l, "h") {
		t.Error("current without a stamp")
	}
	write(l.Stamp(), "h\n", 0o644)
	if !binariesCurrent(l, "h") {
		t.Error("not current with every binary and the stamp")
	}
	if binariesCurrent(l, "other") {
		t.Error("current with a stale stamp")
	}
	os.Remove(l.Bin("kubelet"))
	if binariesCurrent(l, "h") {
		t.Error("current with a binary missing")
	}
}

func TestFindRepo(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := FindRepo(sub); err == nil {
		t.Error("found a repository where there is none")
	}
	os.WriteFile(filepath.Join(dir, "a", "go.mod"), []byte("module example.com/other\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("// c\nmodule "+ModulePath+"\n\ngo 1.26\n"), 0o644)
	got, err := FindRepo(sub)
	if err != nil || got != dir {
		t.Errorf("FindRepo = %q, %v; want %q", got, err, dir)
	}
}

func TestStateRoundTrip(t *testing.T) {
	l := testLayout(t)
	st := &State{Layout: l, Phase: phaseReady, Sysctls: map[string]string{"kernel.panic": "1"},
		HostDirs: []HostDir{{Path: "/var/lib/cni", Existed: true, Entries: []string{"a"}}},
		Procs:    []Proc{{Name: "etcd", PID: 42, StartTicks: 7}}}
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(l.StateFile())
	if err != nil {
		t.Fatal(err)
	}
	if got.Layout != l || got.Phase != phaseReady || got.Sysctls["kernel.panic"] != "1" || got.Procs[0] != st.Procs[0] || got.HostDirs[0].Entries[0] != "a" {
		t.Errorf("round trip: %+v", got)
	}
	if _, err := loadState(filepath.Join(t.TempDir(), "none.json")); err != errNoState {
		t.Errorf("missing state: %v, want errNoState", err)
	}
}

func TestKubeLDFlags(t *testing.T) {
	got := kubeLDFlags()
	for _, want := range []string{
		"-s -w ",
		"-X k8s.io/component-base/version.gitVersion=" + KubeVersion + " ",
		"-X k8s.io/component-base/version.gitMajor=1 ",
		"-X k8s.io/component-base/version.gitMinor=34 ",
		"-X k8s.io/client-go/pkg/version.gitVersion=" + KubeVersion + " ",
	} {
		if !strings.Contains(got+" ", want) {
			t.Errorf("ldflags %q lack %q", got, want)
		}
	}
}
