package opensbx

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
)

// Labels every Opensbx container carries. The namespace label scopes
// ownership: a Manager sees only containers with its own namespace.
const (
	labelPrefix    = "org.opensbx."
	labelManaged   = labelPrefix + "managed"
	labelNamespace = labelPrefix + "namespace"
	labelName      = labelPrefix + "name"
	labelSpec      = labelPrefix + "spec"
	labelTTL       = labelPrefix + "ttl"
	labelExpiresAt = labelPrefix + "expires-at"
	labelMemory    = labelPrefix + "memory-mb"
	labelCPUs      = labelPrefix + "cpus"
	labelPorts     = labelPrefix + "ports"
	labelKeepAlive = labelPrefix + "keep-alive"
	labelPrivate   = labelPrefix + "private"
)

// ownedLabels selects the containers of this Manager's namespace.
func (m *Manager) ownedLabels() map[string]string {
	return map[string]string{labelManaged: "true", labelNamespace: m.cfg.namespace}
}

// owns reports whether labels mark a container of this Manager's namespace.
func (m *Manager) owns(labels map[string]string) bool {
	return labels[labelManaged] == "true" && labels[labelNamespace] == m.cfg.namespace
}

// containerName is the engine-wide container name of sandbox name. The
// namespace's length comes first, so that no two (namespace, name) pairs
// share a container name: namespace "a" with name "b-x" is
// "opensbx1-a-b-x", namespace "a-b" with name "x" is "opensbx3-a-b-x".
func (m *Manager) containerName(name string) string {
	return "opensbx" + strconv.Itoa(len(m.cfg.namespace)) + "-" + m.cfg.namespace + "-" + name
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// validName reports whether s is a valid sandbox name.
func validName(s string) bool { return nameRE.MatchString(s) }

// isHexID reports whether s is a container id or id prefix of at least
// minPrefix characters: lower-case hex digits.
func isHexID(s string) bool {
	if len(s) < minPrefix || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// minPrefix is the shortest id prefix a caller may give.
const minPrefix = 4

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// friendlyName returns a random "adjective-noun-xxxx" name.
func friendlyName() string {
	var b [6]byte
	rand.Read(b[:])
	adjectives := strings.Fields("amber brave calm eager fuzzy gentle happy jolly keen lucid " +
		"merry nimble proud quiet rapid sunny tidy vivid witty zesty")
	nouns := strings.Fields("badger comet dolphin falcon gecko heron ibis jaguar koala lemur " +
		"marten narwhal otter panda quokka raven salmon tapir walrus yak")
	return adjectives[int(b[0])%len(adjectives)] + "-" + nouns[int(b[1])%len(nouns)] + "-" + hex.EncodeToString(b[2:4])
}
