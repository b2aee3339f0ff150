package cluster

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestContainerdConfig(t *testing.T) {
	l := testLayout(t)
	got, err := ContainerdConfig(l)
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, line := range strings.Split(got, "\n") {
		lines[strings.TrimSpace(line)] = true
	}
	for _, want := range []string{
		`root = "` + l.StateDir + `/containerd"`,
		`state = "/run/test-kube/containerd"`,
		`address = "/run/test-kube/containerd.sock"`,
		`[plugins."io.containerd.grpc.v1.cri"]`,
		`restrict_oom_score_adj = true`,
		`sandbox_image = "localhost/opensbx/kube-pause:1"`,
		`Root = "/run/test-kube/runc"`,
		`SystemdCgroup = false`,
		`conf_dir = "` + l.StateDir + `/cni"`,
		`config_path = "` + l.StateDir + `/certs.d"`,
		`stream_server_address = "127.0.0.1"`,
		`netns_mounts_under_state_dir = true`,
	} {
		if !lines[want] {
			t.Errorf("missing line %s", want)
		}
	}
	// Nothing may point at the containerd that dockerd (or the system) runs.
	for _, bad := range []string{"/run/containerd", "/var/lib/containerd", "/var/run/docker", "disabled_plugins"} {
		if strings.Contains(got, bad) {
			t.Errorf("config mentions %s", bad)
		}
	}
}

func TestRegistryHosts(t *testing.T) {
	hosts := RegistryHosts()
	for _, reg := range []string{"docker.io", "registry.k8s.io"} {
		if _, ok := hosts[reg]; !ok {
			t.Errorf("no hosts.toml for %s", reg)
		}
	}
	for reg, toml := range hosts {
		for _, line := range strings.Split(toml, "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "server") || strings.HasPrefix(line, "[host.") {
				if !strings.Contains(line, `"https://127.0.0.1:1"`) {
					t.Errorf("%s: %s does not go to the local black hole", reg, line)
				}
			}
		}
	}
}

func TestCNIConfList(t *testing.T) {
	l := testLayout(t)
	b, err := CNIConfList(l)
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Name    string
		Plugins []struct {
			Type      string
			Bridge    string
			IsGateway bool
			IPMasq    bool
			IPAM      struct {
				Type    string
				Ranges  [][]map[string]string
				Routes  []any
				DataDir string
			}
		}
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if conf.Name != CNIConfigName || len(conf.Plugins) != 1 {
		t.Fatalf("conf = %+v", conf)
	}
	p := conf.Plugins[0]
	checks := []struct {
		what      string
		got, want any
	}{
		{"type", p.Type, "bridge"},
		{"bridge", p.Bridge, "osbxkube0"},
		{"ipMasq", p.IPMasq, false},
		{"isGateway", p.IsGateway, true},
		{"ipam type", p.IPAM.Type, "host-local"},
		{"subnet", p.IPAM.Ranges[0][0]["subnet"], "10.244.0.0/24"},
		{"routes", len(p.IPAM.Routes), 0},
		{"dataDir", p.IPAM.DataDir, l.IPAMDir()},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestKubeletConfig(t *testing.T) {
	l := testLayout(t)
	b, err := KubeletConfig(l)
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		want any
	}{
		{"kind", "KubeletConfiguration"},
		{"apiVersion", "kubelet.config.k8s.io/v1beta1"},
		{"address", "127.0.0.1"},
		{"healthzBindAddress", "127.0.0.1"},
		{"readOnlyPort", 0.0},
		{"cgroupDriver", "cgroupfs"},
		{"failCgroupV1", false},
		{"failSwapOn", false},
		{"podPidsLimit", float64(PodPidsLimit)},
		{"resolvConf", ""},
		{"containerRuntimeEndpoint", "unix:///run/test-kube/containerd.sock"},
		{"tlsCertFile", l.StateDir + "/pki/kubelet-server.crt"},
	}
	for _, tt := range tests {
		if got, ok := conf[tt.key]; !ok || got != tt.want {
			t.Errorf("%s = %#v, want %#v", tt.key, got, tt.want)
		}
	}
	auth := conf["authentication"].(map[string]any)
	if auth["anonymous"].(map[string]any)["enabled"] != false {
		t.Error("anonymous kubelet access enabled")
	}
}

func TestRenderKubeconfig(t *testing.T) {
	b, err := RenderKubeconfig("https://127.0.0.1:16443", []byte("CA"), KubeconfigUser{Name: "admin", CertPEM: []byte("CERT"), KeyPEM: []byte("KEY")})
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		CurrentContext string `json:"current-context"`
		Clusters       []struct {
			Name    string
			Cluster struct {
				Server string
				CA     string `json:"certificate-authority-data"`
			}
		}
		Users []struct {
			Name string
			User struct {
				Cert string `json:"client-certificate-data"`
				Key  string `json:"client-key-data"`
			}
		}
		Contexts []struct {
			Name    string
			Context struct{ Cluster, User, Namespace string }
		}
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	dec := func(s string) string {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	checks := []struct {
		what, got, want string
	}{
		{"server", conf.Clusters[0].Cluster.Server, "https://127.0.0.1:16443"},
		{"ca", dec(conf.Clusters[0].Cluster.CA), "CA"},
		{"cert", dec(conf.Users[0].User.Cert), "CERT"},
		{"key", dec(conf.Users[0].User.Key), "KEY"},
		{"current context", conf.CurrentContext, conf.Contexts[0].Name},
		{"context user", conf.Contexts[0].Context.User, "admin"},
		{"context cluster", conf.Contexts[0].Context.Cluster, conf.Clusters[0].Name},
		{"namespace", conf.Contexts[0].Context.Namespace, "default"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
}

func TestDaemons(t *testing.T) {
	l := testLayout(t)
	ds := Daemons(l)
	var names []string
	for _, d := range ds {
		names = append(names, d.Name)
	}
	wantOrder := []string{"containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"}
	if !slices.Equal(names, wantOrder) {
		t.Fatalf("daemons %v, want %v", names, wantOrder)
	}
	wantArgs := map[string][]string{
		"containerd":              {"--address", l.ContainerdSocket()},
		"etcd":                    {"--listen-client-urls", "http://127.0.0.1:12379"},
		"kube-apiserver":          {"--bind-address=127.0.0.1", "--kubelet-preferred-address-types=Hostname", "--secure-port=16443"},
		"kube-controller-manager": {"--use-service-account-credentials=true", "--secure-port=0"},
		"kube-scheduler":          {"--secure-port=0"},
		"kubelet":                 {"--config=" + l.KubeletConfigFile(), "--hostname-override=node-1"},
	}
	for _, d := range ds {
		t.Run(d.Name, func(t *testing.T) {
			for _, w := range wantArgs[d.Name] {
				if !slices.Contains(d.Args, w) {
					t.Errorf("args %v lack %s", d.Args, w)
				}
			}
			for _, a := range d.Args {
				if strings.Contains(a, "0.0.0.0") {
					t.Errorf("listens on all interfaces: %s", a)
				}
			}
			if !slices.Contains(d.Env, "HTTPS_PROXY=http://127.0.0.1:1") {
				t.Errorf("env %v: no black-hole proxy", d.Env)
			}
		})
	}
}
