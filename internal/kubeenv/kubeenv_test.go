package kubeenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKubeconfigFrom(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(file, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     string
		want    string
		wantErr error // nil: any error when wantAny
		wantAny bool
	}{
		{name: "unset", env: "", wantErr: errUnset},
		{name: "file", env: file, want: file},
		{name: "missing", env: filepath.Join(dir, "none"), wantAny: true},
		{name: "directory", env: dir, wantAny: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kubeconfigFrom(func(k string) string {
				if k != EnvKubeconfig {
					t.Errorf("read %s", k)
				}
				return tt.env
			})
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
			case tt.wantAny:
				if err == nil || errors.Is(err, errUnset) {
					t.Errorf("err = %v, want a failure", err)
				}
			default:
				if err != nil || got != tt.want {
					t.Errorf("= %q, %v; want %q", got, err, tt.want)
				}
			}
		})
	}
}

// recorder is a testing.TB that records Skip and Fatal instead of acting.
type recorder struct {
	testing.TB
	skipped, failed string
}

type stop struct{}

func (r *recorder) Helper() {}
func (r *recorder) Skip(args ...any) {
	r.skipped = fmt.Sprint(args...)
	panic(stop{})
}
func (r *recorder) Fatal(args ...any) { r.failed = fmt.Sprint(args...); panic(stop{}) }

func TestKubeconfigSkipsWhenUnset(t *testing.T) {
	t.Setenv(EnvKubeconfig, "")
	r := &recorder{TB: t}
	func() {
		defer func() {
			if v := recover(); v != nil && v != (stop{}) {
				panic(v)
			}
		}()
		Kubeconfig(r)
	}()
	if r.failed != "" {
		t.Fatalf("failed: %s", r.failed)
	}
	for _, want := range []string{EnvKubeconfig, UpCommand, DefaultKubeconfig} {
		if !strings.Contains(r.skipped, want) {
			t.Errorf("skip message %q does not name %s", r.skipped, want)
		}
	}
}
