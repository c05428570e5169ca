// Command syncdriver syncs one revision of an app directory to a cluster the way Argo CD
// v3.6.1 does, with Argo CD's own code, and prints what happened as a JSON-lines timeline on
// stdout (tests/e2e/sync.sh runs it; tests/e2e/README.md documents the events).
//
//  1. Target state: a GenerateManifest request to the running argocd-cmp-server serving
//     plugin.yaml (socket found by plugin name in $ARGOCD_PLUGINSOCKFILEPATH), with the env
//     repo-server computes (ARGOCD_APP_*, KUBE_VERSION, KUBE_API_VERSIONS from the cluster,
//     PARAM_* and ARGOCD_APP_PARAMETERS from -param), then repo-server's tracking annotation
//     and the controller's namespace normalization (generate.go).
//  2. Live state: gitops-engine's cluster cache over the whole cluster, objects of the app
//     found by the tracking annotation, health by gitops-engine with argo-cd's Lua overrides
//     (resource_customizations built in, plus -health-lua files as argocd-cm would add them).
//  3. The operation: the application controller's loop around gitops-engine's sync context
//     (operation.go): prune on, CreateNamespace=true, waves with ARGOCD_SYNC_WAVE_DELAY,
//     hooks, health between waves, no retry unless -retry-limit.
//
// Exit: 0 the operation Succeeded; 1 it Failed, Errored or was still running at -timeout;
// 2 usage or environment error (no cluster, no plugin socket, generation failed).
package main

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	log "github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/cache"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/sync/common"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/kube"
	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	argokube "github.com/argoproj/argo-cd/v3/util/kube"
	utillog "github.com/argoproj/argo-cd/v3/util/log"
	"github.com/argoproj/argo-cd/v3/util/lua"
)

type paramFlags []string

func (p *paramFlags) String() string     { return strings.Join(*p, ",") }
func (p *paramFlags) Set(s string) error { *p = append(*p, s); return nil }

type options struct {
	repoRoot, appPath, appName, namespace string
	plugin, kubeconfig, taskLog           string
	healthLua                             []string
	revision                              int
	params                                paramFlags
	retryLimit                            int64
	timeout, settle                       time.Duration
	awaitHealth                           paramFlags
	verbose                               bool
}

func parseFlags() (*options, error) {
	o := &options{}
	var healthLua paramFlags
	fs := flag.NewFlagSet("syncdriver", flag.ContinueOnError)
	fs.StringVar(&o.repoRoot, "repo-root", "", "repository checkout (what repo-server streams)")
	fs.StringVar(&o.appPath, "app-path", "", "app directory, relative to -repo-root")
	fs.StringVar(&o.appName, "app-name", "", "Application name (default: base name of -app-path)")
	fs.StringVar(&o.namespace, "namespace", "", "destination namespace (default: the app name)")
	fs.StringVar(&o.plugin, "plugin", "klt-render", "plugin name (socket <name>.sock in $ARGOCD_PLUGINSOCKFILEPATH)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster")
	fs.StringVar(&o.taskLog, "task-log", "", "the environment's task log (JSON lines) to report task-exec events from")
	fs.Var(&healthLua, "health-lua", "Lua health script named <group>_<Kind>.lua (as argocd-cm's resource.customizations.health.<group>_<Kind>); repeatable")
	fs.IntVar(&o.revision, "revision", 1, "Git revision number (ARGOCD_APP_REVISION is derived from it)")
	fs.Var(&o.params, "param", "plugin parameter NAME=VALUE (spec.source.plugin.parameters); repeatable")
	fs.Int64Var(&o.retryLimit, "retry-limit", 0, "syncPolicy.retry.limit (Argo CD's default: no retry)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up (terminate the operation) after this long")
	fs.DurationVar(&o.settle, "settle", 3*time.Second, "keep watching this long after the operation completed")
	fs.Var(&o.awaitHealth, "await-health", "after the operation, wait (up to 2 min) until the app's objects of this group/Kind (e.g. batch/Job, klt-render.dev/TaskRecord) are no longer Progressing: Argo CD does not wait for the last wave; repeatable")
	fs.BoolVar(&o.verbose, "v", false, "gitops-engine's log on stderr at info level (default: warnings)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return nil, err
	}
	o.healthLua = healthLua
	if o.repoRoot == "" || o.appPath == "" || fs.NArg() > 0 {
		return nil, errors.New("usage: syncdriver -repo-root DIR -app-path PATH [flags]")
	}
	if o.appName == "" {
		o.appName = filepath.Base(o.appPath)
	}
	if o.namespace == "" {
		o.namespace = o.appName
	}
	return o, nil
}

func (o *options) source() (*source, error) {
	sum := sha1.Sum([]byte(fmt.Sprintf("klt-render e2e %s revision %d", o.appPath, o.revision)))
	s := &source{
		repoRoot: o.repoRoot, appPath: o.appPath, appName: o.appName, namespace: o.namespace,
		revision: hex.EncodeToString(sum[:]), plugin: o.plugin,
	}
	for _, p := range o.params {
		name, value, ok := strings.Cut(p, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("-param %q: want NAME=VALUE", p)
		}
		s.params = append(s.params, v1alpha1.ApplicationSourcePluginParameter{Name: name, String_: &value})
	}
	return s, nil
}

// healthOverrides are argocd-cm's resource.customizations.health.* keys.
func (o *options) healthOverrides() (lua.ResourceHealthOverrides, error) {
	out := lua.ResourceHealthOverrides{}
	for _, path := range o.healthLua {
		script, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		group, kind, ok := strings.Cut(strings.TrimSuffix(filepath.Base(path), ".lua"), "_")
		if !ok {
			return nil, fmt.Errorf("%s: want a file named <group>_<Kind>.lua", path)
		}
		out[group+"/"+kind] = v1alpha1.ResourceOverride{HealthLua: string(script)}
	}
	return out, nil
}

func main() {
	klog.SetLogger(utillog.NewLogrusLogger(log.StandardLogger()))
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "syncdriver:", err)
		os.Exit(2)
	}
	log.SetOutput(os.Stderr)
	log.SetLevel(log.WarnLevel)
	if o.verbose {
		log.SetLevel(log.InfoLevel)
	}
	code, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "syncdriver:", err)
	}
	os.Exit(code)
}

func run(o *options) (int, error) {
	start := time.Now()
	tl := newTimeline(os.Stdout, start)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, err := o.source()
	if err != nil {
		return 2, err
	}
	overrides, err := o.healthOverrides()
	if err != nil {
		return 2, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return 2, fmt.Errorf("kubeconfig: %w", err)
	}
	// The controller has two configs per cluster: the raw one (Cluster.RawRestConfig, for
	// kubectl's apply) and one tuned by SetK8SConfigDefaults (Cluster.RESTConfig: QPS 50,
	// burst 100, its own transport) for the cluster cache and the sync context's clients.
	rawCfg := rest.CopyConfig(cfg)
	if err := v1alpha1.SetK8SConfigDefaults(cfg); err != nil {
		return 2, fmt.Errorf("kubeconfig: %w", err)
	}
	obs := &observer{tl: tl, appName: o.appName, namespace: o.namespace, override: overrides,
		jobWave: map[string]*int64{}, readyPods: map[string]bool{}}
	op := &operation{cfg: cfg, rawCfg: rawCfg, namespace: o.namespace, appName: o.appName, override: overrides,
		revision: src.revision, tl: tl, isManaged: obs.isManaged, kick: make(chan struct{}, 1),
		retry: v1alpha1.RetryStrategy{Limit: o.retryLimit}}
	obs.wake = op.wake
	kubectl := argokube.NewKubectl()
	clusterCache := cache.NewClusterCache(cfg,
		cache.SetKubectl(kubectl),
		cache.SetPopulateResourceInfoHandler(obs.populate),
		cache.SetLogr(utillog.NewLogrusLogger(log.StandardLogger())))
	if err := clusterCache.EnsureSynced(); err != nil {
		return 2, fmt.Errorf("cluster cache: %w", err)
	}
	log.Infof("cluster cache synced in %s", time.Since(start).Round(time.Millisecond))
	defer clusterCache.Invalidate()
	for key, r := range clusterCache.FindResources("", func(r *cache.Resource) bool { return r.Resource != nil }) {
		if key.Group == "batch" && key.Kind == "Job" && obs.isManaged(r) {
			obs.jobWave[key.Namespace+"/"+key.Name] = waveOf(r.Resource)
		}
	}
	unsubscribe := clusterCache.OnResourceUpdated(obs.onUpdate)
	defer unsubscribe()
	go obs.tailTaskLog(ctx, o.taskLog)

	targets, err := generate(ctx, src, cfg, clusterCache, kubectl)
	if err != nil {
		return 2, err
	}
	log.Infof("manifests generated at %s", time.Since(start).Round(time.Millisecond))
	tl.emit("generate", subject{}, f("revision", src.revision), f("objects", len(targets)))
	op.cache, op.targets = clusterCache, targets
	obs.setTargets(targets)
	op.kubectl = &stampingKubectl{Kubectl: kubectl, tl: tl}

	opCtx, opCancel := context.WithTimeout(ctx, o.timeout)
	defer opCancel()
	st, timedOut := op.run(opCtx)
	time.Sleep(o.settle)
	deadline := time.Now().Add(2 * time.Minute)
	for _, gk := range o.awaitHealth {
		if timedOut {
			break // still running: nothing to wait for
		}
		awaitHealth(clusterCache, obs, gk, time.Until(deadline))
	}
	tl.emit("sync-result", subject{}, f("phase", string(st.phase)), f("message", st.message),
		f("timedOut", timedOut), f("retries", st.retryCount), f("resources", resultLines(st.results)))
	if st.phase == common.OperationSucceeded {
		return 0, nil
	}
	return 1, nil
}

func generate(ctx context.Context, src *source, cfg *rest.Config, cc cache.ClusterCache, kubectl kube.Kubectl) ([]*unstructured.Unstructured, error) {
	version, err := kubectl.GetServerVersion(cfg)
	if err != nil {
		return nil, fmt.Errorf("server version of %s: %w", cfg.Host, err)
	}
	env, err := src.pluginEnviron(version, apiVersionStrings(cc.GetAPIResources()))
	if err != nil {
		return nil, err
	}
	// repo-server's default request deadline (--repo-server-timeout-seconds).
	gctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return src.generateTargets(gctx, env, cc)
}

// resultLines are the operation's resource results, as `argocd app get` lists them.
func resultLines(results []common.ResourceSyncResult) []map[string]string {
	out := make([]map[string]string, 0, len(results))
	for _, r := range results {
		out = append(out, map[string]string{
			"kind": r.ResourceKey.Kind, "namespace": r.ResourceKey.Namespace, "name": r.ResourceKey.Name,
			"status": string(r.Status), "hookType": string(r.HookType), "hookPhase": string(r.HookPhase),
			"syncPhase": string(r.SyncPhase), "message": r.Message,
		})
	}
	return out
}

// awaitHealth waits until every object of the app with the given group/Kind has a health
// other than Progressing (Argo CD does not wait for the last wave's health; the app's health
// settles later, which is what a user sees next).
func awaitHealth(cc cache.ClusterCache, obs *observer, groupKind string, limit time.Duration) {
	group, kind, _ := strings.Cut(groupKind, "/")
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		pending := 0
		for _, r := range cc.FindResources("", func(r *cache.Resource) bool {
			return r.Ref.Kind == kind && r.ResourceKey().Group == group && obs.isManaged(r)
		}) {
			if i := infoOf(r); i == nil || i.health == "" || i.health == "Progressing" {
				pending++
			}
		}
		if pending == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
