package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Phases of a cluster in its state file.
const (
	phaseStarting = "starting" // up is (or was, when it failed) under way
	phaseReady    = "ready"    // up finished
	phaseDownFail = "down-failed"
)

// State is what up started and what it found on the host before changing
// it: down needs nothing else to stop the cluster and restore the host.
type State struct {
	Layout    Layout    `json:"layout"`     // the layout up used
	StartedAt time.Time `json:"started_at"` // when up began
	Phase     string    `json:"phase"`      // starting, ready or down-failed
	// Sysctls holds the values of the sysctls before up, by name.
	Sysctls map[string]string `json:"sysctls"`
	// HostDirs holds what each of hostDirs contained before up.
	HostDirs []HostDir `json:"host_dirs"`
	// BridgeExisted says the CNI bridge interface existed before up (then
	// down leaves it).
	BridgeExisted bool `json:"bridge_existed"`
	// IptablesBefore holds iptables-save's and ip6tables-save's output
	// before up, by program name.
	IptablesBefore map[string]string `json:"iptables_before"`
	// Procs are the daemons up started, in start order.
	Procs []Proc `json:"procs"`
}

// HostDir is a host directory and, when it existed, the paths (relative,
// slash separated) it held.
type HostDir struct {
	Path    string   `json:"path"`
	Existed bool     `json:"existed"`
	Entries []string `json:"entries,omitempty"`
}

// Proc identifies one process up started. A PID alone could be reused:
// StartTicks (field 22 of /proc/PID/stat) tells it apart.
type Proc struct {
	Name       string `json:"name"`
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"start_ticks"`
}

// errNoState means no state file: no cluster is up (or a down finished).
var errNoState = errors.New("no cluster state")

// loadState reads the state file at path.
func loadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoState
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	return &st, nil
}

// save writes the state file atomically (a rename over the old one).
func (st *State) save() error {
	b, err := marshalState(st)
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	path := st.Layout.StateFile()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// Cluster runs the commands of kubecluster on one Layout.
type Cluster struct {
	// Layout is where the cluster lives.
	Layout Layout
	// Repo is the root of the opensbx repository: Build reads the build
	// module and the pause program from it. Only Build and Up need it.
	Repo string
	// Log gets progress lines. If nil, they are discarded.
	Log io.Writer
	// Keep makes a failed Up leave what it started for inspection
	// instead of tearing it down.
	Keep bool
}

func (c *Cluster) logf(format string, args ...any) {
	if c.Log == nil {
		return
	}
	fmt.Fprintf(c.Log, "kubecluster: "+format+"\n", args...)
}
