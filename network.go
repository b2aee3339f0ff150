package opensbx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/hostfw"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// Network isolation
//
// By default every sandbox joins one bridge network of the engine's,
// "opensbx" (host interface osbx0), made with inter-container traffic off:
// sandboxes cannot reach each other, whatever their namespace, while
// egress to the outside is masqueraded as on Docker's default bridge.
// Published ports stay on the Manager's host IP (127.0.0.1).
//
// When the engine runs on this machine and the Manager runs as root, it
// also keeps host firewall rules (package internal/hostfw) for every
// osbx* bridge: no new connection from a sandbox to the host itself (so to
// none of its services, this API included) and none to link-local metadata
// addresses (169.254.0.0/16, 100.100.100.200). Elsewhere (a remote engine,
// no root) those two rules cannot be kept: Isolation says so, and the
// Manager logs a warning.
//
// A sandbox created with Egress gets a bridge of its own (a /28 of
// 10.213.0.0/16) whose firewall chain allows only those destinations; it
// needs the host rules, and is removed with the sandbox. Network "none"
// gives no network at all.

// Names of the shared network.
const (
	isolatedNetwork = "opensbx"
	isolatedBridge  = hostfw.BridgePrefix + "0"
	egressPool      = "10.213.0.0/16"
	labelEgressNet  = labelPrefix + "egress-network"
	labelNetwork    = labelPrefix + "network" // on networks Opensbx makes
)

// Isolation reports how the Manager isolates sandboxes' networks.
type Isolation struct {
	// Network is the network sandboxes join by default ("opensbx"), or ""
	// when isolation is off (WithNetworkIsolation(false)): Docker's default
	// bridge. On Kubernetes it is the namespace's isolation NetworkPolicy
	// ("opensbx-isolation").
	Network string
	// HostRules reports that the host firewall rules are in place: no
	// sandbox reaches the host's services or metadata addresses, and Egress
	// allow-lists work. On Kubernetes it reports that the isolation
	// NetworkPolicy is in place, which keeps sandbox pods from each other,
	// the nodes and metadata addresses where the cluster's network plugin
	// enforces NetworkPolicy (the plain bridge plugin does not).
	HostRules bool
	// Reason says why HostRules is false.
	Reason string
}

// netPolicy is the Manager's network setup.
type netPolicy struct {
	status Isolation
	fw     *hostfw.Firewall
}

// Isolation reports how the Manager isolates sandboxes' networks.
func (m *Manager) Isolation() Isolation { return m.net.status }

// setupNetwork makes the shared network and the host rules (New).
func (m *Manager) setupNetwork(ctx context.Context) error {
	if !m.cfg.isolation {
		m.net.status.Reason = "network isolation is off (WithNetworkIsolation(false))"
		return nil
	}
	if m.onKubernetes() {
		return m.kubeIsolation(ctx)
	}
	n, err := m.engine.NetworkEnsure(ctx, engine.NetworkSpec{
		Name:       isolatedNetwork,
		BridgeName: isolatedBridge,
		ICC:        false,
		Labels:     map[string]string{labelManaged: "true", labelNetwork: "isolated"},
	})
	if err != nil {
		return fmt.Errorf("network %s: %w", isolatedNetwork, err)
	}
	if n.Labels[labelManaged] != "true" {
		return sbxerr.Conflict("the engine has a network %q that Opensbx did not make; remove it or turn isolation off", isolatedNetwork)
	}
	if icc := n.Options["com.docker.network.bridge.enable_icc"]; icc != "false" {
		return sbxerr.Conflict("network %q lets containers reach each other (enable_icc=%q); remove it so that Opensbx makes it anew", isolatedNetwork, icc)
	}
	m.net.status.Network = isolatedNetwork
	if !m.info.Local {
		m.net.status.Reason = "the engine is not on this machine, so its host's firewall is not the Manager's to keep"
	} else if fw, err := hostfw.New(); err != nil {
		m.net.status.Reason = err.Error()
	} else if err := fw.EnsureIsolation(ctx); err != nil {
		m.net.status.Reason = err.Error()
	} else {
		m.net.fw, m.net.status.HostRules = fw, true
	}
	if !m.net.status.HostRules {
		m.log.Warn("sandboxes can reach this host's services and metadata addresses: the host firewall rules are not in place",
			"reason", m.net.status.Reason)
	}
	return nil
}

// networkOf is the network a sandbox joins: o.Network, the shared network,
// or "" (the engine's default bridge).
func (m *Manager) networkFor(o CreateOptions) string {
	if o.Network != "" || m.onKubernetes() { // a Pod is on the cluster's network
		return o.Network
	}
	return m.net.status.Network
}

// egressNetwork makes the network of a sandbox with an allow-list and its
// firewall chain, and returns its name. The caller removes it with
// dropEgressNetwork when the sandbox goes.
func (m *Manager) egressNetwork(ctx context.Context, allow []string) (string, error) {
	if m.net.fw == nil {
		return "", sbxerr.New(ErrUnsupported, "an egress allow-list needs the host firewall rules: %s", m.net.status.Reason)
	}
	used := map[netip.Prefix]bool{}
	nets, err := m.engine.Networks(ctx, map[string]string{labelManaged: "true", labelNetwork: "egress"})
	if err != nil {
		return "", fmt.Errorf("list networks: %w", err)
	}
	for _, n := range nets {
		for _, s := range n.Subnets {
			if p, err := netip.ParsePrefix(s); err == nil {
				used[p] = true
			}
		}
	}
	pool := netip.MustParsePrefix(egressPool)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		var b [4]byte
		rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		subnet, ok := freeSubnet(pool, used, int(b[0])<<8|int(b[1]))
		if !ok {
			return "", sbxerr.New(ErrRateLimited, "no free /28 left in %s for egress networks", egressPool)
		}
		name, bridge := isolatedNetwork+"-e-"+id, hostfw.BridgePrefix+id
		if _, err := m.engine.NetworkEnsure(ctx, engine.NetworkSpec{
			Name: name, BridgeName: bridge, Subnet: subnet.String(),
			Labels: map[string]string{labelManaged: "true", labelNamespace: m.cfg.namespace, labelNetwork: "egress"},
		}); err != nil {
			used[subnet] = true // taken meanwhile, or refused: try another
			lastErr = err
			continue
		}
		if err := m.net.fw.EnsureEgress(ctx, bridge, allow); err != nil {
			m.dropEgressNetwork(ctx, name)
			return "", fmt.Errorf("egress rules: %w", err)
		}
		return name, nil
	}
	return "", fmt.Errorf("make an egress network: %w", lastErr)
}

// freeSubnet returns the first /28 of pool at or after slot that is not
// used.
func freeSubnet(pool netip.Prefix, used map[netip.Prefix]bool, slot int) (netip.Prefix, bool) {
	const bits = 28
	slots := 1 << (bits - pool.Bits())
	base := pool.Addr().As4()
	for i := 0; i < slots; i++ {
		n := (slot + i) % slots
		off := uint32(n) << (32 - bits)
		v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
		v += off
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits)
		if !used[p] {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// dropEgressNetwork removes a sandbox's egress network and its rules.
func (m *Manager) dropEgressNetwork(ctx context.Context, name string) error {
	if !strings.HasPrefix(name, isolatedNetwork+"-e-") {
		return nil
	}
	bridge := hostfw.BridgePrefix + strings.TrimPrefix(name, isolatedNetwork+"-e-")
	err := m.engine.NetworkRemove(ctx, name)
	if errors.Is(err, ErrNotFound) {
		err = nil
	}
	if m.net.fw != nil {
		if ferr := m.net.fw.RemoveEgress(ctx, bridge); ferr != nil && err == nil {
			err = ferr
		}
	}
	if err != nil {
		return fmt.Errorf("remove egress network %s: %w", name, err)
	}
	return nil
}
