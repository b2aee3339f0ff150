package cluster

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	in := `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
31 22 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
40 22 0:50 / /var/lib/kubelet/pods/u1/volumes/kubernetes.io~projected/kube\040api\134x rw shared:5 master:1 - tmpfs tmpfs rw
`
	got, err := parseMountinfo(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []mount{
		{"/", "ext4"},
		{"/sys/fs/cgroup/memory", "cgroup"},
		{"/sys/fs/cgroup/unified", "cgroup2"},
		{`/var/lib/kubelet/pods/u1/volumes/kubernetes.io~projected/kube api\x`, "tmpfs"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if _, err := parseMountinfo("garbage line\n"); err == nil {
		t.Error("garbage parsed")
	}
}

func TestMountsToUnmount(t *testing.T) {
	ms := []mount{
		{Point: "/"},
		{Point: "/var/lib/kubelet"},
		{Point: "/var/lib/kubelet/pods/a/volumes/x"},
		{Point: "/var/lib/kubeletfoo"}, // a sibling, not inside
		{Point: "/run/netns/cni-1"},
		{Point: "/run/netns/cni-2"},
		{Point: "/run/opensbx-kube/containerd/t/k8s.io/c1/rootfs"},
		{Point: "/var/lib/kubelet/pods/a/volumes/x"}, // mounted twice
	}
	tests := []struct {
		dirs []string
		want []string
	}{
		{dirs: nil, want: nil},
		{dirs: []string{"/var/lib/kubelet"}, want: []string{
			"/var/lib/kubelet/pods/a/volumes/x", "/var/lib/kubelet/pods/a/volumes/x", "/var/lib/kubelet"}},
		{dirs: []string{"/run/netns/cni-2", "/run/opensbx-kube/"}, want: []string{
			"/run/opensbx-kube/containerd/t/k8s.io/c1/rootfs", "/run/netns/cni-2"}},
	}
	for _, tt := range tests {
		if got := mountsToUnmount(ms, tt.dirs); !slices.Equal(got, tt.want) {
			t.Errorf("mountsToUnmount(%q) = %q, want %q", tt.dirs, got, tt.want)
		}
	}
}

func TestNewEntries(t *testing.T) {
	tests := []struct {
		name        string
		before, now []string
		want        []string
	}{
		{"none new", []string{"a", "a/b"}, []string{"a", "a/b"}, nil},
		{"new tree counts once", []string{"a"}, []string{"a", "n", "n/1", "n/1/2", "z"}, []string{"n", "z"}},
		{"new inside old", []string{"a"}, []string{"a", "a/new", "a/new/x"}, []string{"a/new"}},
		{"gone is not new", []string{"a", "b"}, []string{"a"}, nil},
		{"prefix is not parent", []string{"a"}, []string{"a", "ab"}, []string{"ab"}},
	}
	for _, tt := range tests {
		if got := newEntries(tt.before, tt.now); !slices.Equal(got, tt.want) {
			t.Errorf("%s: newEntries = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestListTree(t *testing.T) {
	dir := t.TempDir()
	if _, exists, err := listTree(filepath.Join(dir, "missing")); exists || err != nil {
		t.Errorf("missing dir: exists=%v err=%v", exists, err)
	}
	for _, p := range []string{"a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "a/f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, exists, err := listTree(dir)
	if err != nil || !exists {
		t.Fatalf("exists=%v err=%v", exists, err)
	}
	if want := []string{"a", "a/b", "a/f", "c"}; !slices.Equal(got, want) {
		t.Errorf("listTree = %q, want %q", got, want)
	}
}
