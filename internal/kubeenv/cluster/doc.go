// Package cluster runs a throw-away single-node Kubernetes cluster on this
// machine for tests: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and a kubelet built from the module proxy (see
// ../build), on a containerd of its own (never the one dockerd uses), with
// a bridge CNI network and a locally built pause image. Nothing it does
// needs or makes traffic off the machine.
//
// A [Cluster] value runs the commands of kubecluster: [Cluster.Build],
// [Cluster.Up], [Cluster.Import], [Cluster.Status], [Cluster.Down]. Up
// records in a state file every process it starts and what it finds on the
// host before the kubelet changes it (sysctls, /var/lib/kubelet and the
// other host directories, iptables, the bridge); Down puts it back and
// removes only what appeared. It does not manage more than one cluster per
// machine: a lock and the fixed [DefaultLayout] prevent a second.
package cluster
