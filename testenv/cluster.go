// The --cluster mode: kube-controller-manager and kube-scheduler in the same
// process as the API server, each with its own cancellable context, talking to
// it through the admin kubeconfig like the real components do.

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/cli/globalflag"
	"k8s.io/component-base/logs"
	cmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	cmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// clusterControllers are the kube-controller-manager controllers the cluster
// runs. job, garbage-collector, deployment and replicaset make Jobs and
// Deployments behave as in a cluster (and Job pods go with their Job);
// namespace lets a deleted namespace finish; serviceaccount creates each
// namespace's "default" ServiceAccount (objects some tools expect), while the
// ServiceAccount admission plugin stays disabled, so pods need no token and the
// token controller (which needs the signing key and writes Secrets) is not run;
// ttl-after-finished honours a Job's ttlSecondsAfterFinished. Nothing needs
// the node lifecycle controller: it would taint the node as soon as a kubelet
// heartbeat is late.
var clusterControllers = []string{
	"job-controller", "garbage-collector-controller", "deployment-controller", "replicaset-controller",
	"namespace-controller", "serviceaccount-controller", "ttl-after-finished-controller",
}

// parseComponentFlags parses args into a component's named flag sets, as its
// cobra command does, without logging flags (the API server set those up).
func parseComponentFlags(name string, nfs cliflag.NamedFlagSets, args []string) error {
	globalflag.AddGlobalFlags(nfs.FlagSet("global"), name, logs.SkipLoggingConfigurationFlags())
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	for _, f := range nfs.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", name, fs.Args())
	}
	return nil
}

// startControllerManager runs kube-controller-manager's app.Run until ctx is
// done; its result goes to done.
func startControllerManager(ctx context.Context, kubeconfig string, done chan<- error) error {
	s, err := cmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	all, off, aliases := cmapp.KnownControllers(), cmapp.ControllersDisabledByDefault(), cmapp.ControllerAliases()
	nfs := s.Flags(all, off, aliases)
	s.ParsedFlags = &nfs
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0", // no /healthz listener: one fewer port, no delegated authn
		"--controllers=" + strings.Join(clusterControllers, ","),
		// React within a second, not the production defaults' tens of seconds.
		"--concurrent-job-syncs=5",
		"--concurrent-gc-syncs=5",
		"--min-resync-period=1m",
	}
	if err := parseComponentFlags("kube-controller-manager", nfs, args); err != nil {
		return err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	c, err := s.Config(ctx, all, off, aliases)
	if err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	go func() { done <- cmapp.Run(ctx, c.Complete()) }()
	return nil
}

// startScheduler runs kube-scheduler with its default profile until ctx is
// done; its result goes to done.
func startScheduler(ctx context.Context, kubeconfig string, done chan<- error) error {
	opts := schedoptions.NewOptions()
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
	}
	if err := parseComponentFlags("kube-scheduler", *opts.Flags, args); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	cc, sched, err := schedapp.Setup(ctx, opts)
	if err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	go func() { done <- schedapp.Run(ctx, cc, sched) }()
	return nil
}

// clusterOptions are the flags of --cluster.
type clusterOptions struct {
	enabled   bool
	kltRender string // the klt-render binary that runs task pods
	// kltEvaluate: the klt-evaluate binary `klt-render run --pod` runs for
	// evaluation pods (passed as KLT_EVALUATE; "" lets klt-render look for it).
	kltEvaluate string
	taskLog     string // JSON-lines log of task executions
}

// complete checks the flags and fills in defaults relative to dir.
func (o *clusterOptions) complete(dir string) error {
	if !o.enabled {
		if o.kltRender != "" || o.taskLog != "" || o.kltEvaluate != "" {
			return fmt.Errorf("--klt-render, --klt-evaluate and --task-log need --cluster")
		}
		return nil
	}
	bin := o.kltRender
	if bin == "" {
		bin = "klt-render"
	}
	found, err := exec.LookPath(bin)
	if err != nil {
		return fmt.Errorf("--klt-render: %w", err)
	}
	if o.kltRender, err = filepath.Abs(found); err != nil {
		return err
	}
	if err := o.findEvaluator(); err != nil {
		return err
	}
	if o.taskLog == "" {
		o.taskLog = filepath.Join(dir, "tasks.jsonl")
	}
	o.taskLog, err = filepath.Abs(o.taskLog)
	return err
}

// startCluster starts the controllers, the scheduler, the kwok node and the
// task runner, and returns once the node is Ready and the controller manager
// has acted (the "default" ServiceAccount of namespace default exists).
func startCluster(ctx context.Context, dir, kubeconfig string, o clusterOptions, timeout time.Duration, done chan<- error) (*taskRunner, error) {
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	kc, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	if err := startControllerManager(ctx, kubeconfig, done); err != nil {
		return nil, err
	}
	if err := startScheduler(ctx, kubeconfig, done); err != nil {
		return nil, err
	}
	kwokLog, err := os.OpenFile(filepath.Join(dir, "kwok.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	if err := startKwok(ctx, kubeconfig, kwokLog); err != nil {
		return nil, fmt.Errorf("kwok: %w", err)
	}
	runner, err := startTaskRunner(ctx, kc, o, filepath.Join(dir, "task-runner.log"))
	if err != nil {
		return nil, fmt.Errorf("task runner: %w", err)
	}
	if err := waitNodeReady(ctx, kc, timeout); err != nil {
		return runner, err
	}
	return runner, waitDefaultServiceAccount(ctx, kc, timeout)
}

func waitDefaultServiceAccount(ctx context.Context, kc kubernetes.Interface, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := kc.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-controller-manager: no default ServiceAccount within %s (%v)", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// findEvaluator resolves --klt-evaluate: the flag, else $KLT_EVALUATE, else
// klt-evaluate beside klt-render; none found is no error (evaluation pods
// then fail with klt-render's message saying what is missing).
func (o *clusterOptions) findEvaluator() error {
	bin := o.kltEvaluate
	if bin == "" {
		bin = os.Getenv("KLT_EVALUATE")
	}
	if bin == "" {
		beside := filepath.Join(filepath.Dir(o.kltRender), "klt-evaluate")
		if st, err := os.Stat(beside); err == nil && !st.IsDir() {
			bin = beside
		}
	}
	if bin == "" {
		return nil
	}
	found, err := exec.LookPath(bin)
	if err != nil {
		return fmt.Errorf("--klt-evaluate: %w", err)
	}
	o.kltEvaluate, err = filepath.Abs(found)
	return err
}
