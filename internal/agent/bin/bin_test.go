package bin

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/sbxerr"
)

// TestBinary: every embedded program decompresses to a static Linux ELF
// executable of its architecture whose SHA-256 is its version.
func TestBinary(t *testing.T) {
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, arch := range Arches() {
		t.Run(arch, func(t *testing.T) {
			is := is.New(t)
			prog, err := Binary(arch)
			is.NoErr(err)
			v, err := Version(arch)
			is.NoErr(err)
			sum := sha256.Sum256(prog)
			is.Equal(hex.EncodeToString(sum[:]), v) // the version is the program's hash
			f, err := elf.NewFile(bytes.NewReader(prog))
			is.NoErr(err)
			defer f.Close()
			is.Equal(f.Machine, machines[arch]) // built for arch
			is.Equal(f.OSABI == elf.ELFOSABI_NONE || f.OSABI == elf.ELFOSABI_LINUX, true)
			is.Equal(f.Type, elf.ET_EXEC) // not a PIE needing a loader
			for _, p := range f.Progs {
				is.True(p.Type != elf.PT_INTERP) // static: no dynamic loader
			}
			is.True(len(prog) < 8<<20) // small
		})
	}
	_, err := Binary("riscv64")
	if !errors.Is(err, sbxerr.ErrUnsupported) {
		t.Fatalf("another architecture: got %v", err)
	}
	_, err = Version("386")
	if !errors.Is(err, sbxerr.ErrUnsupported) {
		t.Fatalf("another architecture: got %v", err)
	}
}

func BenchmarkBinary(b *testing.B) {
	for b.Loop() {
		if _, err := Binary("amd64"); err != nil {
			b.Fatal(err)
		}
	}
}
