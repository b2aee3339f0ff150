package cluster

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// mount is one line of /proc/self/mountinfo.
type mount struct {
	Point  string // mount point, unescaped
	FSType string
}

// parseMountinfo reads /proc/PID/mountinfo.
func parseMountinfo(text string) ([]mount, error) {
	var out []mount
	for n, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		// id parent major:minor root point options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		fields := strings.Fields(pre)
		if !ok || len(fields) < 5 {
			return nil, fmt.Errorf("mountinfo line %d: %q", n+1, line)
		}
		m := mount{Point: unescapeMount(fields[4])}
		if f := strings.Fields(post); len(f) > 0 {
			m.FSType = f[0]
		}
		out = append(out, m)
	}
	return out, nil
}

// unescapeMount undoes the kernel's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// under says whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// mountsToUnmount picks the mount points inside any of dirs, deepest first
// (so nested mounts go before their parents), each once per time mounted.
func mountsToUnmount(ms []mount, dirs []string) []string {
	var out []string
	for _, m := range ms {
		for _, d := range dirs {
			if under(m.Point, d) {
				out = append(out, m.Point)
				break
			}
		}
	}
	// Deepest first; a path mounted twice comes twice, later mount first.
	slices.Reverse(out)
	slices.SortStableFunc(out, func(a, b string) int {
		return strings.Count(b, "/") - strings.Count(a, "/")
	})
	return out
}

// listTree returns the paths under dir (relative, slash separated), or
// exists false when dir does not exist. It does not follow symlinks.
func listTree(dir string) (entries []string, exists bool, err error) {
	if _, err := os.Lstat(dir); os.IsNotExist(err) {
		return nil, false, nil
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		entries = append(entries, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, true, fmt.Errorf("list %s: %w", dir, err)
	}
	return entries, true, nil
}

// newEntries returns the paths of now that are not in before and are not
// inside another new path (removing the top removes those), in order.
func newEntries(before, now []string) []string {
	old := map[string]bool{}
	for _, e := range before {
		old[e] = true
	}
	var out []string
	for _, e := range now {
		if old[e] {
			continue
		}
		if len(out) > 0 && under(e, out[len(out)-1]) {
			continue
		}
		out = append(out, e)
	}
	return out
}
