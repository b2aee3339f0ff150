package kube

import (
	"context"
	"path"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/opensbx/opensbx/internal/engine"
)

// The agent from the nodes, found rather than configured: with
// Config.DiscoverAgent and no AgentHostDir, a sandbox mounts its agent from
// the nodes when a ready agent DaemonSet (the one opensbx.AgentDaemonSet
// makes) in the namespace keeps this agent version on every node it runs
// on, and is installed by an init container otherwise.

// AgentSetSelector selects the agent DaemonSets (opensbx.AgentDaemonSet sets
// these labels); agentSetMount is where their pods mount the node directory.
const (
	AgentSetSelector = "app.kubernetes.io/name=opensbx-agent,app.kubernetes.io/component=agent-installer"
	agentSetMount    = "/host" // where its pod mounts the node directory
)

// agentDirTTL is how long a lookup is trusted, found or not: a DaemonSet
// applied (or removed) later is seen within it, and a burst of creates
// costs one list.
const agentDirTTL = 30 * time.Second

// agentDirEntry is one cached lookup.
type agentDirEntry struct {
	dir string // "" : not found
	at  time.Time
}

// agentHostDir is the node directory a sandbox with agent volume vol
// mounts its agent from: Config.AgentHostDir, else (with DiscoverAgent)
// the directory of a ready agent DaemonSet installing vol, else "" (an
// init container installs it). A failed lookup (no right to list
// DaemonSets, say) is "".
func (k *Kube) agentHostDir(ctx context.Context, vol string) string {
	if k.cfg.AgentHostDir != "" || !k.cfg.DiscoverAgent || vol == "" {
		return k.cfg.AgentHostDir
	}
	k.dirMu.Lock() // one lookup at a time: the others wait for its answer
	defer k.dirMu.Unlock()
	if e, ok := k.dirs[vol]; ok && time.Since(e.at) < agentDirTTL {
		return e.dir
	}
	dir := ""
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := k.cs.AppsV1().DaemonSets(k.cfg.Namespace).List(lctx, metav1.ListOptions{LabelSelector: AgentSetSelector})
	if err == nil {
		for i := range list.Items {
			if d := AgentSetDir(&list.Items[i], vol); d != "" {
				dir = d
				break
			}
		}
	} else if ctx.Err() != nil {
		return "" // the caller gave up: nothing learnt
	}
	if k.dirs == nil {
		k.dirs = map[string]agentDirEntry{}
	}
	k.dirs[vol] = agentDirEntry{dir: dir, at: time.Now()}
	return dir
}

// AgentSetDir is the node directory ds keeps agent volume vol in, or ""
// when ds does not install vol or is not ready on every node it should
// run on (the newest generation everywhere, every pod Ready).
func AgentSetDir(ds *appsv1.DaemonSet, vol string) string {
	st := ds.Status
	if st.ObservedGeneration < ds.Generation || st.DesiredNumberScheduled == 0 ||
		st.NumberReady != st.DesiredNumberScheduled || st.UpdatedNumberScheduled != st.DesiredNumberScheduled {
		return ""
	}
	spec := ds.Spec.Template.Spec
	var volume string
	for _, c := range spec.Containers {
		if n := len(c.Command); n == 0 || c.Command[n-1] != agentSetMount+"/"+vol {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.MountPath == agentSetMount && m.SubPath == "" && m.SubPathExpr == "" {
				volume = m.Name
			}
		}
	}
	if volume == "" {
		return ""
	}
	for _, v := range spec.Volumes {
		if v.Name == volume && v.HostPath != nil {
			return cleanHostDir(v.HostPath.Path)
		}
	}
	return ""
}

// cleanHostDir is p when it is an absolute, clean path other than /.
func cleanHostDir(p string) string {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return ""
	}
	return p
}

// agentVolumeName is the volume name of spec's agent mount, "" without one.
func agentVolumeName(spec engine.ContainerSpec) string {
	for _, mt := range spec.Mounts {
		if mt.Agent {
			return mt.Volume
		}
	}
	return ""
}
