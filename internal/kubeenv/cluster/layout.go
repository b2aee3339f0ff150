package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Versions of what the cluster runs. They must match internal/kubeenv/build/go.mod.
const (
	KubeVersion = "v1.34.4"
	EtcdVersion = "v3.6.4"
)

// Binaries built from the build module, by file name in [Layout.BinDir].
var kubeBinaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"}

// pauseBinary is the sandbox program (../cmd/kubepause) in [Layout.BinDir].
const pauseBinary = "kube-pause"

// Layout says where the cluster keeps its files, which ports and networks it
// uses and what the node is called. [DefaultLayout] is what the kubecluster
// command uses; tests render configuration from their own.
type Layout struct {
	// CacheDir holds the built binaries (bin/) and their stamp, keyed by
	// version so that a fresh clone of the repository reuses them.
	CacheDir string
	// StateDir holds the PKI, configuration, etcd's data, the cluster
	// containerd's root, the admin kubeconfig and the state file. down
	// removes it.
	StateDir string
	// RunDir holds the cluster containerd's state, socket and runc root.
	// down removes it.
	RunDir string
	// LogDir holds one log per daemon, truncated by each up. down keeps it.
	LogDir string
	// LockFile is flocked by every command that changes the cluster.
	LockFile string

	// NodeName is the node's name: the host name, lower case. It must
	// resolve to 127.0.0.1 (the apiserver reaches the kubelet by it).
	NodeName string

	EtcdClientPort     int // etcd clients, 127.0.0.1, plain HTTP
	EtcdPeerPort       int // etcd peers, 127.0.0.1, plain HTTP
	APIServerPort      int // kube-apiserver, 127.0.0.1, HTTPS
	KubeletPort        int // kubelet API, 127.0.0.1, HTTPS
	KubeletHealthzPort int // kubelet healthz, 127.0.0.1, HTTP

	PodSubnet     string // the CNI bridge network's subnet
	ServiceSubnet string // service cluster IPs (no kube-proxy: they do not route)
	Bridge        string // the CNI bridge interface
	CNIBinDir     string // where Debian's containernetworking-plugins are
	PauseImage    string // the locally built sandbox image (containerd's sandbox_image)
}

// DefaultLayout is the layout of the one cluster a machine runs.
func DefaultLayout() (Layout, error) {
	host, err := os.Hostname()
	if err != nil {
		return Layout{}, fmt.Errorf("hostname: %w", err)
	}
	return Layout{
		CacheDir:           "/var/cache/opensbx/kube-" + KubeVersion,
		StateDir:           "/var/lib/opensbx-kube",
		RunDir:             "/run/opensbx-kube",
		LogDir:             "/var/log/opensbx-kube",
		LockFile:           "/run/opensbx-kube.lock",
		NodeName:           strings.ToLower(host),
		EtcdClientPort:     12379,
		EtcdPeerPort:       12380,
		APIServerPort:      16443,
		KubeletPort:        10250,
		KubeletHealthzPort: 10248,
		PodSubnet:          "10.244.0.0/24",
		ServiceSubnet:      "10.96.0.0/24",
		Bridge:             "osbxkube0",
		CNIBinDir:          "/usr/lib/cni",
		PauseImage:         "localhost/opensbx/kube-pause:1",
	}, nil
}

// BinDir is where the built binaries are.
func (l Layout) BinDir() string { return filepath.Join(l.CacheDir, "bin") }

// Bin is the path of one built binary.
func (l Layout) Bin(name string) string { return filepath.Join(l.BinDir(), name) }

// Stamp is the file that records which build module the binaries came from.
func (l Layout) Stamp() string { return filepath.Join(l.CacheDir, "stamp") }

// PKIDir holds the CA, the certificates and the service-account keys.
func (l Layout) PKIDir() string { return filepath.Join(l.StateDir, "pki") }

// PKIFile is a file in PKIDir.
func (l Layout) PKIFile(name string) string { return filepath.Join(l.PKIDir(), name) }

// AdminKubeconfig is the kubeconfig for the cluster admin (system:masters).
func (l Layout) AdminKubeconfig() string { return filepath.Join(l.StateDir, "admin.kubeconfig") }

// Kubeconfig is the kubeconfig of one component (kubelet, scheduler, ...).
func (l Layout) Kubeconfig(component string) string {
	return filepath.Join(l.StateDir, component+".kubeconfig")
}

// StateFile records what up started and what it changed on the host.
func (l Layout) StateFile() string { return filepath.Join(l.StateDir, "state.json") }

// ContainerdSocket is the gRPC socket of the cluster's own containerd.
func (l Layout) ContainerdSocket() string { return filepath.Join(l.RunDir, "containerd.sock") }

// ContainerdRoot is the cluster containerd's --root.
func (l Layout) ContainerdRoot() string { return filepath.Join(l.StateDir, "containerd") }

// ContainerdState is the cluster containerd's --state.
func (l Layout) ContainerdState() string { return filepath.Join(l.RunDir, "containerd") }

// ContainerdConfigFile is the cluster containerd's --config.
func (l Layout) ContainerdConfigFile() string { return filepath.Join(l.StateDir, "containerd.toml") }

// RegistryHostsDir is containerd's registry config_path (hosts.toml files).
func (l Layout) RegistryHostsDir() string { return filepath.Join(l.StateDir, "certs.d") }

// RuncRoot is runc's --root for the cluster's containers.
func (l Layout) RuncRoot() string { return filepath.Join(l.RunDir, "runc") }

// CNIConfDir holds the CNI network configuration.
func (l Layout) CNIConfDir() string { return filepath.Join(l.StateDir, "cni") }

// IPAMDir is host-local IPAM's dataDir.
func (l Layout) IPAMDir() string { return filepath.Join(l.StateDir, "ipam") }

// EtcdDataDir is etcd's --data-dir.
func (l Layout) EtcdDataDir() string { return filepath.Join(l.StateDir, "etcd") }

// KubeletConfigFile is the kubelet's --config.
func (l Layout) KubeletConfigFile() string { return filepath.Join(l.StateDir, "kubelet.json") }

// Log is the log file of one daemon.
func (l Layout) Log(daemon string) string { return filepath.Join(l.LogDir, daemon+".log") }

// APIServerURL is where clients reach the apiserver.
func (l Layout) APIServerURL() string { return fmt.Sprintf("https://127.0.0.1:%d", l.APIServerPort) }

// hostDirs are the host directories the kubelet, containerd's CRI plugin and
// the CNI plugins write to outside the Layout. down brings each back to what
// it was before up: removed when it did not exist, otherwise stripped of
// what appeared in it.
var hostDirs = []string{
	"/var/lib/kubelet",
	"/var/log/pods",
	"/var/log/containers",
	"/var/lib/cni",
	"/run/netns",
	"/run/mount", // libmount's utab, made by the mount program the kubelet runs
}

// kubeletRootDir is the kubelet's --root-dir (its default).
const kubeletRootDir = "/var/lib/kubelet"

// sysctls are the kernel settings the kubelet (and the CNI bridge plugin's
// gateway) may change; up records them and down writes back those that
// changed.
var sysctls = []string{
	"kernel.panic",
	"kernel.panic_on_oops",
	"vm.overcommit_memory",
	"vm.panic_on_oom",
	"kernel.keys.root_maxkeys",
	"kernel.keys.root_maxbytes",
	"net.ipv4.ip_forward",
}
