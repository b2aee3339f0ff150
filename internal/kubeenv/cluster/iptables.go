package cluster

import (
	"bufio"
	"fmt"
	"slices"
	"strings"
)

// ruleset is what iptables-save printed, per table: chain names and rules
// (the words after "-A"), in order.
type ruleset struct {
	tables []string
	chains map[string][]string   // table -> chains (built-in and user)
	policy map[string]string     // "table chain" -> policy ("-" for user chains)
	rules  map[string][][]string // table -> rules, each as argv starting with the chain
}

// parseIptablesSave reads the output of iptables-save.
func parseIptablesSave(text string) (ruleset, error) {
	rs := ruleset{chains: map[string][]string{}, policy: map[string]string{}, rules: map[string][][]string{}}
	table := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || line == "COMMIT":
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			rs.tables = append(rs.tables, table)
		case strings.HasPrefix(line, ":"):
			if table == "" {
				return ruleset{}, fmt.Errorf("iptables-save line %d: chain outside a table", n)
			}
			name, rest, _ := strings.Cut(line[1:], " ")
			policy, _, _ := strings.Cut(rest, " ")
			rs.chains[table] = append(rs.chains[table], name)
			rs.policy[table+" "+name] = policy
		case strings.HasPrefix(line, "-A "):
			if table == "" {
				return ruleset{}, fmt.Errorf("iptables-save line %d: rule outside a table", n)
			}
			words, err := splitRule(line[len("-A "):])
			if err != nil {
				return ruleset{}, fmt.Errorf("iptables-save line %d: %w", n, err)
			}
			rs.rules[table] = append(rs.rules[table], words)
		default:
			return ruleset{}, fmt.Errorf("iptables-save line %d: unexpected %q", n, line)
		}
	}
	return rs, sc.Err()
}

// splitRule splits a rule of iptables-save into words the way iptables'
// own parser does: blanks separate, double quotes group, a backslash
// escapes the next character.
func splitRule(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == '"':
			quoted = !quoted
			inWord = true
		case (c == ' ' || c == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// ownedChain says whether a chain name is one the kubelet or a CNI plugin
// makes. Only such chains, and rules in or jumping to them, are ever
// removed: whatever else appeared meanwhile (dockerd's rules) stays.
func ownedChain(name string) bool {
	return strings.HasPrefix(name, "KUBE-") || strings.HasPrefix(name, "CNI-")
}

// ruleTarget is the chain a rule jumps or goes to, or "".
func ruleTarget(rule []string) string {
	for i := 0; i+1 < len(rule); i++ {
		if rule[i] == "-j" || rule[i] == "--jump" || rule[i] == "-g" || rule[i] == "--goto" {
			return rule[i+1]
		}
	}
	return ""
}

// iptablesCleanup compares two outputs of iptables-save, before up and now,
// and returns the iptables commands (argv without the program) that remove
// what the cluster added: first new rules in chains that existed before
// (-D), then every new owned chain is flushed (-F) and deleted (-X).
func iptablesCleanup(before, after string) ([][]string, error) {
	b, err := parseIptablesSave(before)
	if err != nil {
		return nil, fmt.Errorf("before: %w", err)
	}
	a, err := parseIptablesSave(after)
	if err != nil {
		return nil, fmt.Errorf("after: %w", err)
	}
	var deletes, flushes, removes [][]string
	for _, table := range a.tables {
		newChains := map[string]bool{}
		for _, c := range a.chains[table] {
			if ownedChain(c) && !slices.Contains(b.chains[table], c) {
				newChains[c] = true
			}
		}
		// Rules are compared as a multiset: a rule that was there twice
		// and is now there three times had one added.
		seen := map[string]int{}
		for _, r := range b.rules[table] {
			seen[strings.Join(r, "\x00")]++
		}
		for _, r := range a.rules[table] {
			key := strings.Join(r, "\x00")
			if seen[key] > 0 {
				seen[key]--
				continue
			}
			chain, target := r[0], ruleTarget(r)
			if newChains[chain] {
				continue // goes with the flush
			}
			if ownedChain(chain) || ownedChain(target) {
				deletes = append(deletes, append([]string{"-t", table, "-D"}, r...))
			}
		}
		for _, c := range a.chains[table] {
			if newChains[c] {
				flushes = append(flushes, []string{"-t", table, "-F", c})
				removes = append(removes, []string{"-t", table, "-X", c})
			}
		}
	}
	return slices.Concat(deletes, flushes, removes), nil
}

// newEmptyTables returns the tables of after that before did not have and
// that hold nothing: no rules and only built-in chains that accept. An
// iptables-nft that made a table for the kubelet's chains leaves it so once
// they are gone.
func newEmptyTables(before, after string) ([]string, error) {
	b, err := parseIptablesSave(before)
	if err != nil {
		return nil, fmt.Errorf("before: %w", err)
	}
	a, err := parseIptablesSave(after)
	if err != nil {
		return nil, fmt.Errorf("after: %w", err)
	}
	var out []string
	for _, table := range a.tables {
		if slices.Contains(b.tables, table) || len(a.rules[table]) > 0 {
			continue
		}
		empty := true
		for _, c := range a.chains[table] {
			if a.policy[table+" "+c] != "ACCEPT" {
				empty = false
			}
		}
		if empty {
			out = append(out, table)
		}
	}
	return out, nil
}
