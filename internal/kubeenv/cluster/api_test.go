package cluster

import (
	"encoding/json"
	"testing"
)

func TestNodeReady(t *testing.T) {
	tests := []struct {
		name string
		json string
		want bool
	}{
		{"ready", `{"status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"True"}]}}`, true},
		{"not ready", `{"status":{"conditions":[{"type":"Ready","status":"False","reason":"KubeletNotReady"}]}}`, false},
		{"no conditions", `{}`, false},
		{"ready but tainted", `{"spec":{"taints":[{"key":"node.kubernetes.io/not-ready","effect":"NoSchedule"}]},"status":{"conditions":[{"type":"Ready","status":"True"}]}}`, false},
	}
	for _, tt := range tests {
		var n node
		if err := json.Unmarshal([]byte(tt.json), &n); err != nil {
			t.Fatal(err)
		}
		if got, why := nodeReady(n); got != tt.want {
			t.Errorf("%s: nodeReady = %v (%s), want %v", tt.name, got, why, tt.want)
		}
	}
}
