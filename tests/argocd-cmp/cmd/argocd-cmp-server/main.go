// Command argocd-cmp-server runs Argo CD's config-management-plugin sidecar server, exactly the
// cobra command that argo-cd's multi-call binary dispatches to when it is invoked as
// argocd-cmp-server (github.com/argoproj/argo-cd/v3/cmd/argocd-cmp-server/commands). Only that
// one command is linked, so the build is smaller than the whole `argocd` binary.
package main

import (
	"os"

	"k8s.io/klog/v2"

	cmpserver "github.com/argoproj/argo-cd/v3/cmd/argocd-cmp-server/commands"
	"github.com/argoproj/argo-cd/v3/util/log"
)

func main() {
	// As argo-cd's cmd/main.go does for every component. Its other step,
	// util/grpc.DisableSRVLookups(), is left out: it turns off the DNS SRV lookups that grpc's
	// grpclb balancer turns on when it is linked in, and panics when they are already off. The
	// full multi-call binary links grpclb (through its cloud SDKs), this cmp-server-only build
	// does not, so SRV lookups are off here anyway (and the server only serves a unix socket).
	klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig()))

	command := cmpserver.NewCommand()
	command.SilenceUsage = true
	if err := command.Execute(); err != nil {
		os.Exit(1)
	}
}
