// Command kubecluster builds, starts and stops the throw-away single-node
// Kubernetes cluster that the Kubernetes backend's tests run against. Run it
// as root from inside the repository:
//
//	go run ./internal/kubeenv/cmd/kubecluster build          # binaries into /var/cache/opensbx (cold: ~11 min)
//	go run ./internal/kubeenv/cmd/kubecluster up             # start (builds first if needed); prints the kubeconfig path
//	go run ./internal/kubeenv/cmd/kubecluster import IMAGE…  # local Docker images into the cluster's containerd
//	go run ./internal/kubeenv/cmd/kubecluster status
//	go run ./internal/kubeenv/cmd/kubecluster down           # stop it and restore the host
//
// up prints only the admin kubeconfig's path on stdout (progress goes to
// stderr), so `export OPENSBX_KUBECONFIG=$(go run ./internal/kubeenv/cmd/kubecluster up)`
// works. See docs/kubernetes-cluster.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/opensbx/opensbx/internal/kubeenv/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubecluster:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: kubecluster [-keep] [-q] build|up|down|status|import IMAGE...")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kubecluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keep := fs.Bool("keep", false, "up: leave what a failed up started, for inspection (down removes it)")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() == 0 {
		return errUsage
	}
	l, err := cluster.DefaultLayout()
	if err != nil {
		return err
	}
	c := &cluster.Cluster{Layout: l, Log: stderr, Keep: *keep}
	if *quiet {
		c.Log = nil
	}
	needRepo := func() error {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		c.Repo, err = cluster.FindRepo(wd)
		return err
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	if cmd != "import" && len(rest) > 0 {
		return errUsage
	}
	switch cmd {
	case "build":
		if err := needRepo(); err != nil {
			return err
		}
		return c.Build(ctx)
	case "up":
		if err := needRepo(); err != nil {
			return err
		}
		path, err := c.Up(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, path)
		return nil
	case "down":
		return c.Down(ctx)
	case "status":
		return c.Status(ctx, stdout)
	case "import":
		return c.Import(ctx, rest)
	default:
		return errUsage
	}
}
