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
//     signals), with the Opensbx agent as its main process (see agent.go),
//     which runs the caller's command or the image's own, when asked for,
//     as its child; without the agent, a long sleep is the main process
//     unless the caller gave a command or asked for the image's own.
//   - Memory is limited with no swap beyond it; CPUs by CFS quota; at most
//     WithPidsLimit processes and threads (1024), so a fork bomb stays
//     inside; at most WithNofile open files per process (16384).
//   - Capabilities: every one is dropped except the few a normal shell
//     session and the usual servers need (sandboxCaps); NET_RAW (raw
//     sockets, ping, ARP spoofing), MKNOD, SYS_CHROOT, SETFCAP, SETPCAP and
//     AUDIT_WRITE are gone.
//   - no-new-privileges: setuid binaries cannot raise privileges.
//   - Optionally a read-only root file system (with /tmp and /work on
//     volumes of their own), a disk quota (WithDiskQuota), another OCI
//     runtime (gVisor's runsc), no network, and a non-root user.
//   - Its json-file log is bounded (10 MB, one file).
//   - Ports are published on the Manager's host IP (127.0.0.1 by default),
//     each on a free host port.
//   - Labels record ownership (managed, namespace), the name, the settings
//     hash, TTL, limits and ports, so that a restarted Manager knows it all
//     from the engine alone.

// keepAlive is the default command of a sandbox: a long sleep that ends at
// once on SIGTERM (the sandbox runs under an init that forwards signals).
func keepAlive() []string { return []string{"sleep", "2147483647"} }

// sandboxCaps are the capabilities a sandbox keeps: changing file owners
// and modes and reading any file as root (CHOWN, DAC_OVERRIDE, FOWNER,
// FSETID), switching users (SETUID, SETGID: su, a server dropping root),
// signalling processes of other users (KILL), and binding ports below
// 1024 (NET_BIND_SERVICE: a web server on :80).
func sandboxCaps() []string {
	return []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"}
}

// mainCommand is a sandbox's own main process: the caller's command, the
// image's (KeepImageCommand), or none (the sandbox only stays alive).
func mainCommand(o CreateOptions, img engine.Image) []string {
	switch {
	case o.KeepImageCommand:
		return append(append([]string(nil), img.Entrypoint...), img.Cmd...)
	case len(o.Entrypoint) > 0:
		return append(append([]string(nil), o.Entrypoint...), o.Command...)
	case len(o.Command) > 0:
		return append([]string(nil), o.Command...)
	}
	return nil
}

// containerSpec is the engine's description of sandbox name made from o.
// agentVol and agentVersion name the agent's volume ("" without the
// agent): with it, the agent is the main process and the sandbox's own
// command, if any, its supervised child.
func (m *Manager) containerSpec(o CreateOptions, img engine.Image, name, spec, agentVol, agentVersion string) engine.ContainerSpec {
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
		PidsLimit:      m.cfg.pidsLimit,
		Init:           true,
		SecurityOpt:    []string{"no-new-privileges:true"},
		CapDrop:        []string{"ALL"},
		CapAdd:         sandboxCaps(),
		Ulimits:        []engine.Ulimit{{Name: "nofile", Soft: m.cfg.nofile, Hard: m.cfg.nofile}},
		LogMaxSize:     "10m",
		User:           o.User,
		Runtime:        o.Runtime,
		ReadonlyRootfs: o.ReadOnlyRootfs,
		NetworkMode:    m.networkFor(o),
	}
	if o.ReadOnlyRootfs {
		cs.Mounts = append(cs.Mounts, engine.Mount{Target: "/tmp"}, engine.Mount{Target: "/work"})
	}
	if m.cfg.diskQuota > 0 {
		cs.StorageSize = strconv.FormatInt(m.cfg.diskQuota, 10)
	}
	switch {
	case agentVol != "":
		user := o.User
		if user == "" {
			user = img.User
		}
		cs.Entrypoint, cs.Cmd, cs.User = m.agentServe(user, mainCommand(o, img)), nil, "0"
		cs.Mounts = append(cs.Mounts, engine.Mount{Volume: agentVol, Target: agentDir, ReadOnly: true, Agent: true})
		labels[labelAgent] = agentVersion
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
