package opensbx

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
)

// Container policy: what every sandbox container gets, whatever the
// caller asked for.
//
//   - It runs under the engine's init (PID 1 reaps zombies and forwards
//     signals), with a long sleep as its main process unless the caller
//     gave a command or asked for the image's own.
//   - Memory is limited with no swap beyond it; CPUs by CFS quota; at most
//     pidsLimit processes and threads, so a fork bomb stays inside.
//   - no-new-privileges: setuid binaries cannot raise privileges.
//   - Its json-file log is bounded (10 MB, one file).
//   - Ports are published on the Manager's host IP (127.0.0.1 by default),
//     each on a free host port.
//   - Labels record ownership (managed, namespace), the name, the settings
//     hash, TTL, limits and ports, so that a restarted Manager knows it all
//     from the engine alone.

// keepAlive is the default command of a sandbox: a long sleep that ends at
// once on SIGTERM (the sandbox runs under an init that forwards signals).
func keepAlive() []string { return []string{"sleep", "2147483647"} }

// pidsLimit bounds the processes and threads of one sandbox.
const pidsLimit = 4096

// containerSpec is the engine's description of sandbox name made from o.
func (m *Manager) containerSpec(o CreateOptions, name, spec string) engine.ContainerSpec {
	labels := map[string]string{}
	for k, v := range m.cfg.labels {
		labels[k] = v
	}
	for k, v := range o.Labels {
		labels[k] = v
	}
	labels[labelManaged] = "true"
	labels[labelNamespace] = m.cfg.namespace
	labels[labelName] = name
	labels[labelSpec] = spec
	labels[labelTTL] = strconv.FormatInt(int64(o.TTL/time.Millisecond), 10)
	labels[labelExpiresAt] = strconv.FormatInt(m.now().Add(o.TTL).UnixMilli(), 10)
	labels[labelMemory] = strconv.FormatInt(o.Resources.MemoryMB, 10)
	labels[labelCPUs] = strconv.FormatFloat(o.Resources.CPUs, 'f', -1, 64)
	labels[labelPorts] = strings.Join(o.Ports, ",")
	if o.Private {
		labels[labelPrivate] = "true"
	}
	cs := engine.ContainerSpec{
		Name:       m.containerName(name),
		Image:      o.Image,
		Env:        o.Env,
		Labels:     labels,
		WorkingDir: o.WorkingDir,
		Ports:      o.Ports,
		HostIP:     m.cfg.hostIP,
		Resources: engine.Resources{
			MemoryBytes: o.Resources.MemoryMB << 20,
			NanoCPUs:    int64(math.Round(o.Resources.CPUs * 1e9)),
		},
		PidsLimit:   pidsLimit,
		Init:        true,
		SecurityOpt: []string{"no-new-privileges:true"},
		LogMaxSize:  "10m",
	}
	switch {
	case o.KeepImageCommand:
	case len(o.Command) == 0 && len(o.Entrypoint) == 0:
		ka := keepAlive()
		cs.Entrypoint, cs.Cmd = ka[:1], ka[1:]
		labels[labelKeepAlive] = "true"
	default:
		cs.Cmd = o.Command
		if len(o.Entrypoint) > 0 {
			cs.Entrypoint = o.Entrypoint
		} else if len(o.Command) > 0 {
			// A given Command is the whole argv, not arguments to the image's
			// ENTRYPOINT.
			cs.Entrypoint = []string{}
		}
	}
	return cs
}
