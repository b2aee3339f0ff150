package kube

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// How sandboxes are isolated on a cluster: by NetworkPolicy objects, which
// the cluster's network plugin enforces (a plugin without policy support,
// such as the plain bridge plugin, ignores them; nothing here can tell).
//
//   - The namespace's isolation policy (IsolationPolicy, made by
//     NetworkEnsure) selects every sandbox pod without a policy of its own.
//     Such a pod accepts connections only from pods that are not
//     sandboxes, and connects anywhere but to other sandboxes and to the
//     link-local and cloud metadata addresses; as Docker sandboxes on the
//     Manager's bridge (no traffic between containers) behind the host
//     rules.
//   - A sandbox without a network (NetworkMode "none") or with an egress
//     allow-list (ContainerSpec.EgressAllow) gets a policy of its own,
//     named like its pod and owned by it (the garbage collector removes it
//     with the pod). Policies add up, so such a pod carries the label
//     labelOwnPolicy and the namespace's policy leaves it out.
const (
	// IsolationPolicy is the name of the namespace's isolation policy.
	IsolationPolicy = "opensbx-isolation"
	// labelPod is the pod's own name as a label: its policy's selector.
	labelPod = "opensbx.org/pod"
	// labelOwnPolicy marks a pod that has a policy of its own.
	labelOwnPolicy = "opensbx.org/own-policy"
	// labelPolicy is "true" on every policy this engine makes.
	labelPolicy = "opensbx.org/policy"
)

// metadataNets are the link-local and cloud metadata destinations no
// sandbox may connect to (the Docker host rules' list).
var metadataNets = []string{"169.254.0.0/16", "100.100.100.200/32"}

// notSandbox selects, in every namespace, the pods that are not sandboxes.
func notSandbox() networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{},
		PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: labelSandbox, Operator: metav1.LabelSelectorOpDoesNotExist},
		}},
	}
}

// ipBlock allows cidr but what no sandbox may reach inside it: the
// metadata nets, and the cluster's own addresses (deny: its pod networks
// and nodes, which some plugins match against address blocks too). ok is
// false when nothing of cidr is left (it lies inside a metadata net).
func ipBlock(cidr string, deny []string) (peer networkingv1.NetworkPolicyPeer, ok bool, err error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		if a, aerr := netip.ParseAddr(cidr); aerr == nil {
			p, err = netip.PrefixFrom(a, a.BitLen()), nil
		}
	}
	if err != nil || !p.Addr().Is4() {
		return peer, false, sbxerr.Invalid("egress destination %q is not an IPv4 address or prefix", cidr)
	}
	p = p.Masked()
	b := &networkingv1.IPBlock{CIDR: p.String()}
	for i, ex := range append(slices.Clone(metadataNets), deny...) {
		e, err := netip.ParsePrefix(ex)
		if err != nil {
			continue
		}
		e = e.Masked()
		switch {
		case e.Bits() <= p.Bits() && e.Contains(p.Addr()) && i < len(metadataNets):
			return peer, false, nil // all of it is a metadata address
		case e.Bits() > p.Bits() && p.Contains(e.Addr()) && !slices.Contains(b.Except, e.String()):
			b.Except = append(b.Except, e.String())
		}
	}
	return networkingv1.NetworkPolicyPeer{IPBlock: b}, true, nil
}

// isolationPolicy is the namespace's isolation policy.
func (k *Kube) isolationPolicy(deny []string) *networkingv1.NetworkPolicy {
	anywhere, _, _ := ipBlock("0.0.0.0/0", deny)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: IsolationPolicy, Namespace: k.cfg.Namespace, Labels: map[string]string{labelPolicy: "true"}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{
				MatchLabels:      map[string]string{labelSandbox: "true"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: labelOwnPolicy, Operator: metav1.LabelSelectorOpDoesNotExist}},
			},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{notSandbox()}}},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{notSandbox(), anywhere}}},
		},
	}
}

// podPolicy is the own policy of the pod of container id made to spec, or
// nil when it needs none.
func (k *Kube) podPolicy(id string, spec engine.ContainerSpec, deny []string) (*networkingv1.NetworkPolicy, error) {
	switch {
	case spec.NetworkMode == "none":
		if len(spec.EgressAllow) > 0 {
			return nil, sbxerr.Invalid("an egress allow-list needs a network")
		}
	case spec.NetworkMode != "" && spec.NetworkMode != "bridge":
		return nil, sbxerr.New(sbxerr.ErrUnsupported, "network %q: a Pod is on the cluster's network (want \"\" or \"none\")", spec.NetworkMode)
	case len(spec.EgressAllow) == 0:
		return nil, nil
	}
	if len(spec.EgressAllow) > 64 {
		return nil, sbxerr.Invalid("%d egress destinations, at most 64", len(spec.EgressAllow))
	}
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: podName(id), Namespace: k.cfg.Namespace,
			Labels: map[string]string{labelPolicy: "true"}, Annotations: map[string]string{annID: id}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{labelPod: podName(id)}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		},
	}
	if spec.NetworkMode == "none" {
		return np, nil // no rule: nothing in, nothing out
	}
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{notSandbox()}}}
	var to []networkingv1.NetworkPolicyPeer
	for _, c := range spec.EgressAllow {
		peer, ok, err := ipBlock(c, deny)
		if err != nil {
			return nil, err
		}
		if ok {
			to = append(to, peer)
		}
	}
	if len(to) > 0 { // a rule with no peer would allow everything
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: to}}
	}
	return np, nil
}

// clusterNets returns what of the cluster no sandbox may connect to by
// address: the nodes' pod networks (Spec.PodCIDRs) and the nodes' own
// addresses, or none when nodes cannot be read (they are cluster-scoped; a
// Manager may lack the right). It is read once.
func (k *Kube) clusterNets(ctx context.Context) []string {
	k.denyMu.Lock()
	defer k.denyMu.Unlock()
	if k.deny != nil {
		return k.deny
	}
	nodes, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	nets := []string{}
	add := func(s string) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4() && !p.Addr().IsLoopback() && !slices.Contains(nets, p.Masked().String()) {
			nets = append(nets, p.Masked().String())
		}
	}
	for _, n := range nodes.Items {
		for _, c := range n.Spec.PodCIDRs {
			add(c)
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
				add(a.Address)
			}
		}
	}
	k.deny = nets
	return nets
}

// createPolicy makes np before its pod exists, so that the pod never runs
// without it.
func (k *Kube) createPolicy(ctx context.Context, np *networkingv1.NetworkPolicy) error {
	_, err := k.cs.NetworkingV1().NetworkPolicies(k.cfg.Namespace).Create(ctx, np, metav1.CreateOptions{})
	return classify(err)
}

// ownPolicy makes pod the owner of its policy, so that the garbage
// collector removes the policy with the pod, however the pod goes.
func (k *Kube) ownPolicy(ctx context.Context, pod *corev1.Pod) error {
	no, yes := false, true
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": []metav1.OwnerReference{{
		APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID, Controller: &no, BlockOwnerDeletion: &yes,
	}}}})
	if err != nil {
		return err
	}
	_, err = k.cs.NetworkingV1().NetworkPolicies(k.cfg.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	return classify(err)
}

// dropPolicy removes the policy named like a pod, if there is one.
func (k *Kube) dropPolicy(ctx context.Context, name string) error {
	err := k.cs.NetworkingV1().NetworkPolicies(k.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return classify(err)
}

// NetworkEnsure makes or updates the namespace's isolation policy when
// spec asks for a network whose members cannot reach each other (ICC
// false), the engine-neutral form of the Manager's isolated network.
// Network.Name is IsolationPolicy. Other networks are not supported: a Pod
// is on the cluster's network.
func (k *Kube) NetworkEnsure(ctx context.Context, spec engine.NetworkSpec) (engine.Network, error) {
	if spec.ICC {
		return engine.Network{}, unsupported("engine networks")
	}
	want := k.isolationPolicy(k.clusterNets(ctx))
	for k2, v := range spec.Labels {
		want.Labels[k2] = v
	}
	api := k.cs.NetworkingV1().NetworkPolicies(k.cfg.Namespace)
	have, err := api.Get(ctx, IsolationPolicy, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) { // another Manager just made it
			err = nil
		}
	case err != nil:
	case have.Labels[labelPolicy] != "true":
		return engine.Network{}, sbxerr.Conflict("namespace %s has a NetworkPolicy %q that Opensbx did not make", k.cfg.Namespace, IsolationPolicy)
	default:
		want.ResourceVersion = have.ResourceVersion
		_, err = api.Update(ctx, want, metav1.UpdateOptions{})
	}
	if err != nil {
		return engine.Network{}, classify(err)
	}
	return engine.Network{Name: IsolationPolicy, Labels: want.Labels}, nil
}
