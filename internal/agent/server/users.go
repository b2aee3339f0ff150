package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// account is a user resolved for running a command.
type account struct {
	uid, gid int
	groups   []uint32 // supplementary groups
	home     string
}

// maxAccountFile bounds how much of /etc/passwd or /etc/group is read.
const maxAccountFile = 4 << 20

// errBadUser reports a user or group that cannot be resolved; its message
// is shown to the caller as the reason the command did not start.
type errBadUser struct{ msg string }

func (e *errBadUser) Error() string { return e.msg }

// resolveUser resolves spec ("name", "uid", "name:group", "uid:gid", and
// mixtures) from the passwd and group files, the way the container runtime
// does for `docker exec -u`: a numeric uid needs no passwd entry (its gid
// is then 0 and its home "/"), a name must have one. Supplementary groups
// are the groups that list the user's name.
func resolveUser(spec, passwdPath, groupPath string) (account, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" || (hasGroup && groupPart == "") {
		return account{}, &errBadUser{fmt.Sprintf("invalid user %q", spec)}
	}
	passwd, err := readAccountFile(passwdPath)
	if err != nil {
		return account{}, err
	}
	a := account{home: "/"}
	name := ""
	if uid, err := strconv.Atoi(userPart); err == nil {
		if uid < 0 || uid > 1<<31-2 {
			return account{}, &errBadUser{fmt.Sprintf("invalid user %q", spec)}
		}
		a.uid = uid
		if e, ok := findPasswd(passwd, func(f []string) bool { return f[2] == userPart }); ok {
			a.gid, _ = strconv.Atoi(e[3])
			a.home = e[5]
			name = e[0]
		}
	} else {
		e, ok := findPasswd(passwd, func(f []string) bool { return f[0] == userPart })
		if !ok {
			return account{}, &errBadUser{fmt.Sprintf("unable to find user %s: no matching entries in passwd file", userPart)}
		}
		a.uid, _ = strconv.Atoi(e[2])
		a.gid, _ = strconv.Atoi(e[3])
		a.home = e[5]
		name = e[0]
	}
	if a.home == "" {
		a.home = "/"
	}
	var group []byte
	if hasGroup || name != "" {
		if group, err = readAccountFile(groupPath); err != nil {
			return account{}, err
		}
	}
	if hasGroup {
		if gid, err := strconv.Atoi(groupPart); err == nil {
			if gid < 0 || gid > 1<<31-2 {
				return account{}, &errBadUser{fmt.Sprintf("invalid group %q", groupPart)}
			}
			a.gid = gid
		} else {
			e, ok := findGroup(group, func(f []string) bool { return f[0] == groupPart })
			if !ok {
				return account{}, &errBadUser{fmt.Sprintf("unable to find group %s: no matching entries in group file", groupPart)}
			}
			a.gid, _ = strconv.Atoi(e[2])
		}
	}
	if name != "" {
		seen := map[uint32]bool{uint32(a.gid): true}
		a.groups = append(a.groups, uint32(a.gid))
		eachLine(group, 4, func(f []string) bool {
			gid, err := strconv.Atoi(f[2])
			if err != nil || gid < 0 || seen[uint32(gid)] {
				return false
			}
			for _, m := range strings.Split(f[3], ",") {
				if m == name {
					seen[uint32(gid)] = true
					a.groups = append(a.groups, uint32(gid))
					break
				}
			}
			return len(a.groups) >= 64 // bounded: stop after 64 groups
		})
	}
	return a, nil
}

// readAccountFile reads at most maxAccountFile bytes of path; a missing
// file reads as empty.
func readAccountFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAccountFile))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// eachLine calls fn with the colon-separated fields of every line of b
// that has at least n fields (comments skipped) until fn returns true.
func eachLine(b []byte, n int, fn func([]string) bool) {
	s := bufio.NewScanner(bytes.NewReader(b))
	s.Buffer(make([]byte, 0, 4096), 64<<10) // a longer line ends the scan
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < n {
			continue
		}
		if fn(f) {
			return
		}
	}
}

func findPasswd(b []byte, match func([]string) bool) ([]string, bool) {
	var out []string
	eachLine(b, 7, func(f []string) bool {
		if _, err := strconv.Atoi(f[2]); err != nil {
			return false
		}
		if _, err := strconv.Atoi(f[3]); err != nil {
			return false
		}
		if match(f) {
			out = f
			return true
		}
		return false
	})
	return out, out != nil
}

func findGroup(b []byte, match func([]string) bool) ([]string, bool) {
	var out []string
	eachLine(b, 4, func(f []string) bool {
		if _, err := strconv.Atoi(f[2]); err != nil {
			return false
		}
		if match(f) {
			out = f
			return true
		}
		return false
	})
	return out, out != nil
}
