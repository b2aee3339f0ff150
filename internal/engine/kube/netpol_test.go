package kube

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/matryer/is"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// TestIPBlock: an allowed block never includes a metadata address or the
// cluster's own addresses, and a block that is all metadata is left out.
func TestIPBlock(t *testing.T) {
	deny := []string{"10.244.0.0/24", "192.168.1.7/32"}
	for _, tc := range []struct {
		cidr   string
		want   string // the block's CIDR, "" when left out
		except []string
		bad    bool
	}{
		{cidr: "0.0.0.0/0", want: "0.0.0.0/0", except: []string{"169.254.0.0/16", "100.100.100.200/32", "10.244.0.0/24", "192.168.1.7/32"}},
		{cidr: "10.0.0.0/8", want: "10.0.0.0/8", except: []string{"10.244.0.0/24"}},
		{cidr: "10.1.2.3/24", want: "10.1.2.0/24"}, // masked
		{cidr: "10.244.0.5/32", want: "10.244.0.5/32"},
		{cidr: "192.0.2.0/24", want: "192.0.2.0/24"},
		{cidr: "169.0.0.0/8", want: "169.0.0.0/8", except: []string{"169.254.0.0/16"}},
		{cidr: "169.254.169.254/32"},
		{cidr: "169.254.0.0/16"},
		{cidr: "100.100.100.200/32"},
		{cidr: "::/0", bad: true},
		{cidr: "not-an-address", bad: true},
	} {
		t.Run(tc.cidr, func(t *testing.T) {
			is := is.New(t)
			peer, ok, err := ipBlock(tc.cidr, deny)
			if tc.bad {
				is.True(errors.Is(err, sbxerr.ErrInvalid))
				return
			}
			is.NoErr(err)
			is.Equal(ok, tc.want != "")
			if !ok {
				return
			}
			is.Equal(peer.IPBlock.CIDR, tc.want)
			is.Equal(peer.IPBlock.Except, tc.except)
		})
	}
}

// TestPodPolicy: a sandbox without a network gets a policy with no rule (no
// traffic either way); one with an allow-list gets exactly its
// destinations out and connections in only from pods that are not
// sandboxes; any other sandbox gets none (the namespace's policy covers it).
func TestPodPolicy(t *testing.T) {
	is := is.New(t)
	k := testKube(t)
	id := newID()

	np, err := k.podPolicy(id, engine.ContainerSpec{}, nil)
	is.NoErr(err)
	is.True(np == nil)

	np, err = k.podPolicy(id, engine.ContainerSpec{NetworkMode: "none"}, nil)
	is.NoErr(err)
	is.Equal(np.Name, podName(id))
	is.Equal(np.Namespace, "sbx")
	is.Equal(np.Spec.PodSelector.MatchLabels, map[string]string{labelPod: podName(id)})
	is.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress})
	is.Equal(len(np.Spec.Ingress), 0)
	is.Equal(len(np.Spec.Egress), 0)

	np, err = k.podPolicy(id, engine.ContainerSpec{EgressAllow: []string{"10.1.2.0/24", "169.254.169.254/32"}}, []string{"10.244.0.0/24"})
	is.NoErr(err)
	is.Equal(len(np.Spec.Egress), 1)
	to := np.Spec.Egress[0].To
	is.Equal(len(to), 1) // the metadata address is not allowed
	is.Equal(to[0].IPBlock.CIDR, "10.1.2.0/24")
	is.Equal(len(np.Spec.Ingress), 1)
	is.Equal(np.Spec.Ingress[0].From, []networkingv1.NetworkPolicyPeer{notSandbox()})

	np, err = k.podPolicy(id, engine.ContainerSpec{EgressAllow: []string{"169.254.169.254"}}, nil)
	is.NoErr(err)
	is.Equal(len(np.Spec.Egress), 0) // nothing left to allow: no rule, so nothing out (a rule without peers would allow all)
	is.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress})

	_, err = k.podPolicy(id, engine.ContainerSpec{NetworkMode: "none", EgressAllow: []string{"10.0.0.0/8"}}, nil)
	is.True(errors.Is(err, sbxerr.ErrInvalid))
	_, err = k.podPolicy(id, engine.ContainerSpec{NetworkMode: "opensbx"}, nil)
	is.True(errors.Is(err, sbxerr.ErrUnsupported))
	many := make([]string, 65)
	for i := range many {
		many[i] = "10.0.0.1"
	}
	_, err = k.podPolicy(id, engine.ContainerSpec{EgressAllow: many}, nil)
	is.True(errors.Is(err, sbxerr.ErrInvalid))
}

// TestIsolationPolicy: the namespace's policy selects the sandbox pods that
// have no policy of their own, lets in only pods that are not sandboxes, and
// lets out to those and to any address but metadata and the cluster's.
func TestIsolationPolicy(t *testing.T) {
	is := is.New(t)
	k := testKube(t)
	np := k.isolationPolicy([]string{"10.244.0.0/24"})
	is.Equal(np.Name, IsolationPolicy)
	sel := np.Spec.PodSelector
	is.Equal(sel.MatchLabels, map[string]string{labelSandbox: "true"})
	is.Equal(sel.MatchExpressions, []metav1.LabelSelectorRequirement{{Key: labelOwnPolicy, Operator: metav1.LabelSelectorOpDoesNotExist}})
	is.Equal(np.Spec.Ingress[0].From, []networkingv1.NetworkPolicyPeer{notSandbox()})
	to := np.Spec.Egress[0].To
	is.Equal(len(to), 2)
	is.Equal(to[0], notSandbox())
	is.Equal(to[1].IPBlock.CIDR, "0.0.0.0/0")
	for _, n := range []string{"169.254.0.0/16", "100.100.100.200/32", "10.244.0.0/24"} {
		is.True(slices.Contains(to[1].IPBlock.Except, n))
	}
	peer := notSandbox()
	is.Equal(peer.PodSelector.MatchExpressions[0].Key, labelSandbox)
	is.Equal(peer.PodSelector.MatchExpressions[0].Operator, metav1.LabelSelectorOpDoesNotExist)
	is.True(peer.NamespaceSelector != nil && len(peer.NamespaceSelector.MatchLabels) == 0) // every namespace
}

// TestPodLabelsForPolicies: every pod carries its name as the label its own
// policy selects.
func TestPodLabelsForPolicies(t *testing.T) {
	is := is.New(t)
	k := testKube(t)
	id := newID()
	pod, err := k.podFor(id, engine.ContainerSpec{Image: "busybox:1"}, "agent:1", "")
	is.NoErr(err)
	is.Equal(pod.Labels[labelPod], podName(id))
	is.True(strings.HasPrefix(pod.Labels[labelPod], "sbx-"))
}
