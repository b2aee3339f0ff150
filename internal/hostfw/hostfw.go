// Package hostfw keeps the host firewall rules that isolate sandboxes: on
// every bridge whose name starts with BridgePrefix, new connections to the
// host itself (any of its addresses, so none of its services) and to
// link-local metadata addresses are dropped, and a bridge may be limited to
// an allow-list of destinations. Docker's own rules keep the rest: the
// bridges' inter-container traffic (enable_icc=false) and traffic between
// different bridges.
//
// It drives iptables (the filter table) as a program with arguments, never
// through a shell, under a context, waiting for the xtables lock. Rules are
// added only when missing, so it is idempotent and safe to run from several
// processes; they stay in place (the chains are this package's own) and
// name bridges by prefix, so they hold for bridges made later.
//
// The layout:
//
//	INPUT       -i osbx+ -j OPENSBX-INPUT          (first)
//	OPENSBX-INPUT  ESTABLISHED,RELATED -j RETURN; -j DROP
//	DOCKER-USER -i osbx+ -j OPENSBX-FORWARD        (first)
//	OPENSBX-FORWARD -d 169.254.0.0/16 -j DROP; -d 100.100.100.200/32 -j DROP;
//	                -i <bridge> -j OSBX-<bridge> (one per allow-listed bridge)
//	OSBX-<bridge>   ESTABLISHED,RELATED -j RETURN; -d <cidr> -j RETURN ...; -j DROP
package hostfw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// BridgePrefix starts the name of every bridge the rules cover.
const BridgePrefix = "osbx"

// Chains of this package.
const (
	chainInput   = "OPENSBX-INPUT"
	chainForward = "OPENSBX-FORWARD"
	egressPrefix = "OSBX-"
)

// metadataNets are the link-local and cloud metadata destinations that no
// sandbox may reach.
func metadataNets() []string { return []string{"169.254.0.0/16", "100.100.100.200/32"} }

// ErrUnavailable reports a host where the rules cannot be kept: no
// iptables, or not root.
var ErrUnavailable = errors.New("the host firewall cannot be managed here")

// Firewall runs iptables.
type Firewall struct {
	bin string
}

// New finds iptables and checks that this process may use it (root). It
// fails with an error matching ErrUnavailable otherwise.
func New() (*Firewall, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: not running as root", ErrUnavailable)
	}
	bin, err := exec.LookPath("iptables")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return &Firewall{bin: bin}, nil
}

// bridgeRE is a bridge name of this package: the prefix and up to 11 more
// letters or digits (an interface name has at most 15 characters).
var bridgeRE = regexp.MustCompile(`^` + BridgePrefix + `[a-z0-9]{1,11}$`)

// ValidBridge reports whether name is a bridge name the rules cover.
func ValidBridge(name string) bool { return bridgeRE.MatchString(name) }

// run runs iptables -w with args and returns its combined output.
func (f *Firewall) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, append([]string{"-w", "5"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// ensureChain creates chain unless it exists.
func (f *Firewall) ensureChain(ctx context.Context, chain string) error {
	if _, err := f.run(ctx, "-S", chain); err == nil {
		return nil
	}
	if _, err := f.run(ctx, "-N", chain); err != nil {
		if _, again := f.run(ctx, "-S", chain); again == nil {
			return nil // made meanwhile
		}
		return err
	}
	return nil
}

// ensureRule appends rule to chain unless it is there; with first set it
// inserts it at the top instead.
func (f *Firewall) ensureRule(ctx context.Context, chain string, first bool, rule ...string) error {
	if _, err := f.run(ctx, append([]string{"-C", chain}, rule...)...); err == nil {
		return nil
	}
	op := []string{"-A", chain}
	if first {
		op = []string{"-I", chain, "1"}
	}
	_, err := f.run(ctx, append(op, rule...)...)
	return err
}

// EnsureIsolation installs the rules every sandbox bridge gets.
func (f *Firewall) EnsureIsolation(ctx context.Context) error {
	for _, c := range []string{chainInput, chainForward, "DOCKER-USER"} {
		if err := f.ensureChain(ctx, c); err != nil {
			return err
		}
	}
	steps := [][]string{
		{chainInput, "", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"},
		{chainInput, "", "-j", "DROP"},
	}
	for _, n := range metadataNets() {
		steps = append(steps, []string{chainForward, "", "-d", n, "-j", "DROP"})
	}
	for _, s := range steps {
		if err := f.ensureRule(ctx, s[0], false, s[2:]...); err != nil {
			return err
		}
	}
	if err := f.ensureRule(ctx, "INPUT", true, "-i", BridgePrefix+"+", "-j", chainInput); err != nil {
		return err
	}
	return f.ensureRule(ctx, "DOCKER-USER", true, "-i", BridgePrefix+"+", "-j", chainForward)
}

// ParseCIDRs checks an allow-list: IPv4 prefixes ("10.0.0.0/8") or
// addresses ("192.0.2.7", taken as /32), at most 64, returned canonical.
func ParseCIDRs(list []string) ([]string, error) {
	if len(list) > 64 {
		return nil, fmt.Errorf("%d destinations, at most 64", len(list))
	}
	out := make([]string, 0, len(list))
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not an IPv4 address or prefix", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if !p.Addr().Is4() {
			return nil, fmt.Errorf("%q: only IPv4 destinations", s)
		}
		out = append(out, p.Masked().String())
	}
	return out, nil
}

// EnsureEgress limits what the containers on bridge may connect to: the
// allow-listed destinations only (replies to connections made to them
// still flow). It must run before a container on the bridge starts.
func (f *Firewall) EnsureEgress(ctx context.Context, bridge string, allow []string) error {
	if !ValidBridge(bridge) {
		return fmt.Errorf("bridge %q is not a sandbox bridge", bridge)
	}
	cidrs, err := ParseCIDRs(allow)
	if err != nil {
		return err
	}
	if err := f.EnsureIsolation(ctx); err != nil {
		return err
	}
	chain := egressPrefix + bridge
	if err := f.ensureChain(ctx, chain); err != nil {
		return err
	}
	if _, err := f.run(ctx, "-F", chain); err != nil {
		return err
	}
	rules := [][]string{{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"}}
	for _, c := range cidrs {
		rules = append(rules, []string{"-d", c, "-j", "RETURN"})
	}
	rules = append(rules, []string{"-j", "DROP"})
	for _, r := range rules {
		if _, err := f.run(ctx, append([]string{"-A", chain}, r...)...); err != nil {
			return err
		}
	}
	return f.ensureRule(ctx, chainForward, false, "-i", bridge, "-j", chain)
}

// RemoveEgress drops the allow-list of bridge (after its network is gone).
func (f *Firewall) RemoveEgress(ctx context.Context, bridge string) error {
	if !ValidBridge(bridge) {
		return fmt.Errorf("bridge %q is not a sandbox bridge", bridge)
	}
	chain := egressPrefix + bridge
	if _, err := f.run(ctx, "-S", chain); err != nil {
		return nil // not there
	}
	for {
		if _, err := f.run(ctx, "-C", chainForward, "-i", bridge, "-j", chain); err != nil {
			break
		}
		if _, err := f.run(ctx, "-D", chainForward, "-i", bridge, "-j", chain); err != nil {
			return err
		}
	}
	if _, err := f.run(ctx, "-F", chain); err != nil {
		return err
	}
	_, err := f.run(ctx, "-X", chain)
	return err
}

// Rules returns the rules of the chains this package keeps and the jumps
// to them, as iptables -S prints them, for inspection.
func (f *Firewall) Rules(ctx context.Context) (string, error) {
	var b strings.Builder
	for _, c := range []string{"INPUT", "DOCKER-USER", chainInput, chainForward} {
		out, err := f.run(ctx, "-S", c)
		if err != nil {
			return "", err
		}
		b.WriteString(out)
	}
	all, err := f.run(ctx, "-S")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(all, "\n") {
		if strings.HasPrefix(line, "-A "+egressPrefix) || strings.HasPrefix(line, "-N "+egressPrefix) {
			b.WriteString(line + "\n")
		}
	}
	return b.String(), nil
}
