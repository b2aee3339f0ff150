package opensbx

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/hostfw"
	"github.com/opensbx/opensbx/internal/testenv"
)

// TestNetworkIsolation checks the isolation every sandbox gets. Traffic is
// sent only between the test's own sandboxes; the host and metadata rules
// are checked by reading the configuration the Manager made, never by
// probing those addresses.
func TestNetworkIsolation(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, cli := newTestManager(t)

	// The shared network: Opensbx's, inter-container traffic off.
	n, err := cli.NetworkInspect(ctx, isolatedNetwork, network.InspectOptions{})
	is.NoErr(err)
	is.Equal(n.Labels[labelManaged], "true")
	is.Equal(n.Options["com.docker.network.bridge.enable_icc"], "false")
	is.Equal(n.Options["com.docker.network.bridge.name"], isolatedBridge)

	server := newBusybox(t, m, CreateOptions{})
	client := newBusybox(t, m, CreateOptions{})
	ci, err := cli.ContainerInspect(ctx, server.ID)
	is.NoErr(err)
	ep := ci.NetworkSettings.Networks[isolatedNetwork]
	is.True(ep != nil && ep.IPAddress != "") // on the shared network
	listening := func() bool {
		res, err := m.Run(ctx, server.ID, ExecOptions{Command: "netstat", Args: []string{"-ltn"}})
		is.NoErr(err)
		return strings.Contains(string(res.Stdout), ":9000 ")
	}
	// nc -l takes one connection and exits: while it still listens, no
	// connection has reached it.
	_, err = m.Exec(ctx, server.ID, ExecOptions{Command: "nc", Args: []string{"-l", "-p", "9000", "-e", "echo", "hello"}})
	is.NoErr(err)
	waitUntil(t, listening)
	res, err := m.Run(ctx, client.ID, ExecOptions{Command: "nc", Args: []string{"-w", "2", ep.IPAddress, "9000"}})
	is.True(err != nil)                                     // another sandbox cannot connect
	is.True(!strings.Contains(string(res.Stdout), "hello")) // nor get an answer
	is.True(listening())                                    // nothing reached the listener
	// The listener itself works: from its own sandbox it answers.
	res, err = m.Run(ctx, server.ID, ExecOptions{Command: "nc", Args: []string{"-w", "2", ep.IPAddress, "9000"}})
	is.NoErr(err)
	is.True(strings.Contains(string(res.Stdout), "hello"))

	// The host rules, read back (only where the Manager can keep them).
	iso := m.Isolation()
	is.Equal(iso.Network, isolatedNetwork)
	if !iso.HostRules {
		t.Logf("host firewall rules not in place here: %s", iso.Reason)
		return
	}
	fw, err := hostfw.New()
	is.NoErr(err)
	rules, err := fw.Rules(ctx)
	is.NoErr(err)
	for _, want := range []string{
		"-A INPUT -i osbx+ -j OPENSBX-INPUT",
		"-A OPENSBX-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
		"-A OPENSBX-INPUT -j DROP",
		"-A DOCKER-USER -i osbx+ -j OPENSBX-FORWARD",
		"-A OPENSBX-FORWARD -d 169.254.0.0/16 -j DROP",
		"-A OPENSBX-FORWARD -d 100.100.100.200/32 -j DROP",
	} {
		is.True(strings.Contains(rules, want)) // the rule is in place
	}
	// The jump comes before anything in INPUT that accepts (others, such
	// as a kubelet's KUBE-FIREWALL, which only drops, may come first).
	out, err := exec.Command("iptables", "-S", "INPUT").Output()
	is.NoErr(err)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	ours := slices.Index(lines, "-A INPUT -i osbx+ -j OPENSBX-INPUT")
	is.True(ours > 0) // the jump is in INPUT
	accepts := slices.IndexFunc(lines, func(l string) bool { return strings.HasSuffix(l, "-j ACCEPT") })
	is.True(accepts < 0 || ours < accepts) // before anything that accepts
}

// TestEgressAllowList: a sandbox with an allow-list gets a network of its
// own with a chain that lets only those destinations through; the network
// and the chain go with the sandbox. Only another of the test's sandboxes
// is contacted.
func TestEgressAllowList(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, cli := newTestManager(t)
	if !m.Isolation().HostRules {
		_, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Egress: []string{"192.0.2.0/24"}})
		is.True(errors.Is(err, ErrUnsupported)) // needs the host rules
		t.Skipf("host firewall rules not in place: %s", m.Isolation().Reason)
	}
	_, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Egress: []string{"not-an-ip"}})
	is.True(errors.Is(err, ErrInvalid))

	sb := newBusybox(t, m, CreateOptions{Egress: []string{"192.0.2.0/24", "198.51.100.7"}})
	ci, err := cli.ContainerInspect(ctx, sb.ID)
	is.NoErr(err)
	netName := ci.Config.Labels[labelEgressNet]
	is.True(strings.HasPrefix(netName, isolatedNetwork+"-e-"))
	is.True(ci.NetworkSettings.Networks[netName] != nil) // on its own network
	n, err := cli.NetworkInspect(ctx, netName, network.InspectOptions{})
	is.NoErr(err)
	bridge := n.Options["com.docker.network.bridge.name"]
	fw, err := hostfw.New()
	is.NoErr(err)
	rules, err := fw.Rules(ctx)
	is.NoErr(err)
	chain := "OSBX-" + bridge
	for _, want := range []string{
		"-A OPENSBX-FORWARD -i " + bridge + " -j " + chain,
		"-A " + chain + " -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
		"-A " + chain + " -d 192.0.2.0/24 -j RETURN",
		"-A " + chain + " -d 198.51.100.7/32 -j RETURN",
		"-A " + chain + " -j DROP",
	} {
		is.True(strings.Contains(rules, want)) // the allow-list is in place
	}

	is.NoErr(m.Delete(ctx, sb.ID))
	_, err = cli.NetworkInspect(ctx, netName, network.InspectOptions{})
	is.True(err != nil) // the network went with the sandbox
	rules, err = fw.Rules(ctx)
	is.NoErr(err)
	is.True(!strings.Contains(rules, chain)) // and its chain
}
