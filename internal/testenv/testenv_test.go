package testenv

import (
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"
)

func TestImages(t *testing.T) {
	is := is.New(t)
	cli := Engine(t)
	Images(t, cli)

	for _, tag := range []string{BusyboxImage, NoShellImage} {
		img, err := cli.ImageInspect(t.Context(), tag)
		is.NoErr(err)                                    // inspect test image
		is.True(img.Config != nil)                       // image has a config
		is.Equal(len(img.Config.Labels[ImageLabel]), 64) // label holds a sha256 hex
	}
}

func TestEnsureImagesConcurrent(t *testing.T) {
	cli := Engine(t)
	Images(t, cli)

	// Cached by now: several callers at once all succeed and agree.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = EnsureImages(t.Context(), cli) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("EnsureImages #%d: %v", i, err)
		}
	}
}

func TestNoshellInputsStable(t *testing.T) {
	is := is.New(t)
	a, err := noshellInputs(t.Context())
	is.NoErr(err) // first inputs
	b, err := noshellInputs(t.Context())
	is.NoErr(err)  // second inputs
	is.Equal(a, b) // the label of a cached image stays valid
}

func TestCheckStatic(t *testing.T) {
	is := is.New(t)
	is.True(checkStatic([]byte("#!/bin/sh\n")) != nil) // a script is no ELF
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Skip("no /proc/self/exe")
	}
	// The test binary is static unless cgo linked it against libc.
	if err := checkStatic(self); err != nil {
		is.True(strings.Contains(err.Error(), "dynamically linked")) // names the problem
	}
}

func TestReadBuildOutputError(t *testing.T) {
	is := is.New(t)
	out := `{"stream":"Step 1/2 : FROM scratch\n"}` + "\n" +
		`{"stream":" ---\u003e Running in 123\n"}` + "\n" +
		`{"errorDetail":{"code":1,"message":"The command returned a non-zero code: 1"},"error":"The command returned a non-zero code: 1"}` + "\n"
	err := readBuildOutput(strings.NewReader(out))
	is.True(err != nil)                                               // an error message fails the build
	is.True(strings.Contains(err.Error(), "non-zero code: 1"))        // keeps the daemon's message
	is.True(strings.Contains(err.Error(), "Step 1/2 : FROM scratch")) // and the output before it

	is.NoErr(readBuildOutput(strings.NewReader(`{"stream":"Successfully built abc\n"}`))) // success
	is.True(readBuildOutput(strings.NewReader(`{"stream":`)) != nil)                      // truncated stream
}
