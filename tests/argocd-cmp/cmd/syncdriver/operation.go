package main

// One sync operation, processed the way argo-cd v3.6.1's application controller processes it:
// processRequestedAppOperation (controller/appcontroller.go:1590-1770) calls SyncAppState
// (controller/sync.go:160-495) each time the operation is picked from the queue, and
// SyncAppState builds a NEW gitops-engine sync context from the live state and the results
// recorded so far (WithInitialState), calls Sync() once and records GetState(). Failed
// operations are retried only while RetryCount < Retry.Limit (no retry by default), after
// Retry.NextRetryAt's backoff (5 s, factor 2, max 3 min).

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	log "github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/cache"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/health"
	gsync "github.com/argoproj/argo-cd/gitops-engine/v3/pkg/sync"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/sync/common"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/kube"
	cdcommon "github.com/argoproj/argo-cd/v3/common"
	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/argo"
	utillog "github.com/argoproj/argo-cd/v3/util/log"
)

const (
	// appOperationMaxRequeueInterval (appcontroller.go:90): the backstop poll of a running operation.
	maxRequeue = 30 * time.Second
	// appOperationRequeueDelay (appcontroller.go:87): after a managed object changed.
	requeueDelay = 5 * time.Second
	// An app status change (a managed object's health changed) re-queues the operation through
	// the Application informer at once (appcontroller.go:3109, rate limiter in ms); the refresh
	// that computes that status comes first: this stands for its latency.
	refreshLatency = 250 * time.Millisecond
)

type operationState struct {
	phase      common.OperationPhase
	message    string
	results    []common.ResourceSyncResult
	startedAt  metav1.Time
	finishedAt *time.Time // set with phase Running while a retry is pending
	retryCount int64
}

type operation struct {
	cfg       *rest.Config // tuned (Cluster.RESTConfig)
	rawCfg    *rest.Config // raw (Cluster.RawRestConfig), for kubectl
	cache     cache.ClusterCache
	kubectl   kube.Kubectl
	targets   []*unstructured.Unstructured
	revision  string
	namespace string
	appName   string
	override  health.HealthOverride
	retry     v1alpha1.RetryStrategy
	tl        *timeline
	isManaged func(*cache.Resource) bool

	mu     sync.Mutex
	nextAt time.Time
	kick   chan struct{}
}

// wake is called on cluster events: schedule the next processing like the controller's queues.
func (op *operation) wake(fast bool) {
	at := time.Now().Add(requeueDelay)
	if fast {
		at = time.Now().Add(refreshLatency)
	}
	op.mu.Lock()
	if at.Before(op.nextAt) {
		op.nextAt = at
	}
	op.mu.Unlock()
	select {
	case op.kick <- struct{}{}:
	default:
	}
}

func (op *operation) schedule(at time.Time) {
	op.mu.Lock()
	op.nextAt = at
	op.mu.Unlock()
}

// waitTurn blocks until the operation is due again (or ctx ends).
func (op *operation) waitTurn(ctx context.Context) error {
	for {
		op.mu.Lock()
		d := time.Until(op.nextAt)
		op.mu.Unlock()
		if d <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-op.kick:
		case <-time.After(d):
		}
	}
}

// run processes the operation until it completes or ctx ends. At the end of ctx the operation
// is left as it is, Running: the controller's sync timeout (controller.sync.timeout.seconds)
// is 0 by default, so Argo CD would keep it running (appcontroller.go:1671 terminates it only
// when a timeout is set). timedOut tells the caller.
func (op *operation) run(ctx context.Context) (st operationState, timedOut bool) {
	st = operationState{phase: common.OperationRunning, startedAt: metav1.Now()}
	op.tl.emit("sync-phase", subject{}, f("phase", string(st.phase)), f("message", ""))
	op.schedule(time.Now())
	for {
		if err := op.waitTurn(ctx); err != nil {
			return st, true
		}
		if !op.processTurn(ctx, &st) {
			return st, false
		}
	}
}

// processTurn is one pass of processRequestedAppOperation; false when the operation completed.
func (op *operation) processTurn(ctx context.Context, st *operationState) bool {
	if st.phase == common.OperationRunning && st.finishedAt != nil {
		retryAt, _ := op.retry.NextRetryAt(*st.finishedAt, st.retryCount)
		if d := time.Until(retryAt); d > 0 {
			op.schedule(retryAt)
			return true
		}
		st.message = fmt.Sprintf("Retrying operation. Attempt #%d", st.retryCount)
		st.finishedAt, st.results = nil, nil
		op.tl.emit("sync-phase", subject{}, f("phase", string(st.phase)), f("message", st.message))
	}
	before := fmt.Sprint(st.phase, st.message, st.results)
	op.schedule(time.Now().Add(maxRequeue))
	op.process(ctx, st)
	if st.phase == common.OperationFailed || st.phase == common.OperationError {
		if st.retryCount < op.retry.Limit || op.retry.Limit < 0 {
			now := time.Now()
			retryAt, _ := op.retry.NextRetryAt(now, st.retryCount)
			st.phase, st.finishedAt = common.OperationRunning, &now
			st.retryCount++
			st.message = fmt.Sprintf("%s. Retrying attempt #%d at %s.", st.message, st.retryCount, retryAt.UTC().Format(time.RFC3339))
		} else if st.retryCount > 0 {
			st.message = fmt.Sprintf("%s (retried %d times).", st.message, st.retryCount)
		}
	}
	if after := fmt.Sprint(st.phase, st.message, st.results); after != before {
		op.tl.emit("sync-phase", subject{}, f("phase", string(st.phase)), f("message", st.message))
		// setOperationState updates the Application; its informer re-queues the operation.
		op.wake(true)
	}
	return !st.phase.Completed()
}

// process is SyncAppState: compare (live state from the cluster cache, Reconcile), a new sync
// context with the controller's options, one Sync() (or Terminate()), GetState().
func (op *operation) process(ctx context.Context, st *operationState) {
	targets := make([]*unstructured.Unstructured, len(op.targets))
	for i, t := range op.targets {
		targets[i] = t.DeepCopy()
	}
	live, err := op.cache.GetManagedLiveObjs(targets, op.isManaged)
	if err != nil {
		st.phase, st.message = common.OperationError, "Failed to load live state: "+err.Error()
		return
	}
	recon := gsync.Reconcile(targets, live, op.namespace, op.cache)
	initial := make([]common.ResourceSyncResult, len(st.results))
	for i, r := range st.results {
		r.Order = i + 1
		initial[i] = r
	}
	foreground := metav1.DeletePropagationForeground
	opts := []gsync.SyncOpt{
		gsync.WithLogr(utillog.NewLogrusLogger(log.StandardLogger())),
		gsync.WithHealthOverride(op.override),
		// syncPolicy.automated {prune: true}; no dry run, no force, hooks not skipped.
		gsync.WithOperationSettings(false, true, false, false),
		gsync.WithInitialState(st.phase, st.message, initial, st.startedAt),
		gsync.WithResourcesFilter(func(_ kube.ResourceKey, target, live *unstructured.Unstructured) bool {
			return isSelfReferenced(live, target, op.appName)
		}),
		gsync.WithManifestValidation(true),
		gsync.WithSyncWaveHook(delayBetweenSyncWaves),
		gsync.WithPruneLast(false),
		gsync.WithResourceModificationChecker(false, nil),
		gsync.WithPrunePropagationPolicy(&foreground),
		gsync.WithReplace(false),
		gsync.WithServerSideApply(false),
		gsync.WithServerSideApplyManager(cdcommon.ArgoCDSSAManager),
		gsync.WithClientSideApplyMigration(true, common.DefaultClientSideApplyMigrationManager),
		gsync.WithPruneConfirmed(false),
		gsync.WithDefaultPruneOption(nil),
		gsync.WithSkipDryRunOnMissingResource(false),
		// syncOptions: [CreateNamespace=true], as deploy/argocd/application.yaml has it.
		gsync.WithNamespaceModifier(func(managed, live *unstructured.Unstructured) (bool, error) {
			return managed != nil && live == nil, nil
		}),
	}
	syncCtx, cleanup, err := gsync.NewSyncContext(op.revision, recon, op.cfg, op.rawCfg, op.kubectl, op.namespace, opts...)
	if err != nil {
		st.phase, st.message = common.OperationError, "failed to initialize sync context: "+err.Error()
		return
	}
	defer cleanup()
	if st.phase == common.OperationTerminating {
		syncCtx.Terminate(ctx)
	} else {
		syncCtx.Sync(ctx)
	}
	st.phase, st.message, st.results = syncCtx.GetState()
}

// isSelfReferenced is appStateManager.isSelfReferencedObj (controller/state.go:1362) for
// annotation tracking.
func isSelfReferenced(live, target *unstructured.Unstructured, appName string) bool {
	if live == nil {
		return true
	}
	var aiv argo.AppInstanceValue
	if target != nil {
		aiv = argo.UnstructuredToAppInstanceValue(target, appName, "")
	} else {
		v := argo.NewResourceTracking().GetAppInstance(live, v1alpha1.TrackingMethodAnnotation, "")
		if v == nil {
			return true
		}
		aiv = *v
	}
	gvk := live.GroupVersionKind()
	return (live.GetNamespace() == aiv.Namespace || live.GetNamespace() == "") &&
		live.GetName() == aiv.Name && gvk.Group == aiv.Group && gvk.Kind == aiv.Kind
}

// delayBetweenSyncWaves is controller/sync.go:716: ARGOCD_SYNC_WAVE_DELAY seconds (default 2)
// between waves, none after the last.
func delayBetweenSyncWaves(_ common.SyncPhase, _ int, finalWave bool) error {
	if !finalWave {
		delay := 2
		if s := os.Getenv("ARGOCD_SYNC_WAVE_DELAY"); s != "" {
			if v, err := strconv.Atoi(s); err == nil {
				delay = v
			}
		}
		time.Sleep(time.Duration(delay) * time.Second)
	}
	return nil
}
