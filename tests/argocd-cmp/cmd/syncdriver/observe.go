package main

// What the driver sees of the cluster: gitops-engine's cluster cache (the controller's live
// state; the info handler plays controller/cache's populateResourceInfoHandler: app name from
// the tracking annotation, health with argo-cd's Lua overrides), the events it turns into
// timeline lines (Jobs, Pods, health of managed objects), the environment's task log, and a
// kubectl wrapper that stamps every real apply and delete the sync engine makes.

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/cache"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/health"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/sync/hook"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/kube"
	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/argo"
)

// resInfo is what the cache keeps per object besides its manifest.
type resInfo struct {
	appName string
	health  string // "" when the kind has no health check
	message string
}

type observer struct {
	tl        *timeline
	appName   string
	namespace string // the destination namespace
	override  health.HealthOverride
	wake      func(fast bool) // asks the operation loop to process the operation again

	mu         sync.Mutex
	jobWave    map[string]*int64 // namespace/name of a live Job -> its wave (for task-exec lines)
	targetWave map[string]*int64 // name of a Job in Git (destination namespace) -> its wave
	readyPods  map[string]bool
}

func (o *observer) populate(un *unstructured.Unstructured, _ bool) (any, bool) {
	info := &resInfo{appName: argo.NewResourceTracking().GetAppName(un, "", v1alpha1.TrackingMethodAnnotation, "")}
	if hs, err := health.GetResourceHealth(un, o.override); err == nil && hs != nil {
		info.health, info.message = string(hs.Status), hs.Message
	}
	// Keep every manifest: the test cluster is small, and the events need them.
	return info, true
}

func infoOf(r *cache.Resource) *resInfo {
	if r == nil {
		return nil
	}
	if i, ok := r.Info.(*resInfo); ok {
		return i
	}
	return nil
}

func (o *observer) isManaged(r *cache.Resource) bool {
	i := infoOf(r)
	return i != nil && i.appName == o.appName
}

// onUpdate runs under the cluster cache's lock: it must not call back into the cache.
func (o *observer) onUpdate(newRes, oldRes *cache.Resource, ns map[kube.ResourceKey]*cache.Resource) {
	var newObj, oldObj *unstructured.Unstructured
	if newRes != nil {
		newObj = newRes.Resource
	}
	if oldRes != nil {
		oldObj = oldRes.Resource
	}
	ref := newRes
	if ref == nil {
		ref = oldRes
	}
	key := ref.ResourceKey()
	// Only this app's objects and what they own: other apps may share the cluster.
	switch {
	case key.Group == "batch" && key.Kind == "Job" && (o.isManaged(newRes) || o.isManaged(oldRes)):
		o.jobEvents(newObj, oldObj)
	case key.Group == "" && key.Kind == "Pod":
		o.podEvents(newObj, ns)
	}
	managed := o.isManaged(newRes) || o.isManaged(oldRes)
	// The reconciler's own records (per workload version) are not in Git, but they are the
	// app's: their health is reported too (tracked: false).
	record := key.Group == "klt-render.dev" && key.Kind == "TaskRecord" && key.Namespace == o.namespace
	if managed || record {
		oldInfo, newInfo := infoOf(oldRes), infoOf(newRes)
		changed := newInfo == nil || oldInfo == nil || oldInfo.health != newInfo.health
		if newInfo != nil && newInfo.health != "" && changed {
			o.tl.emit("health", subjectOf(newObj), f("status", newInfo.health), f("message", newInfo.message), f("tracked", managed))
		}
	}
	if managed {
		oldInfo, newInfo := infoOf(oldRes), infoOf(newRes)
		changed := newInfo == nil || oldInfo == nil || oldInfo.health != newInfo.health
		// A health change changes the app's status, which re-queues the operation at once
		// (appcontroller.go:3109); any other change of a managed object re-queues it after
		// appOperationRequeueDelay (appcontroller.go:480).
		o.wake(changed)
	}
}

func condition(un *unstructured.Unstructured, kind string) (bool, string, string) {
	conds, _, _ := unstructured.NestedSlice(un.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != kind {
			continue
		}
		reason, _ := m["reason"].(string)
		msg, _ := m["message"].(string)
		return m["status"] == "True", reason, msg
	}
	return false, "", ""
}

func hookExtra(un *unstructured.Unstructured) []field {
	if !hook.IsHook(un) {
		return nil
	}
	return []field{f("hook", un.GetAnnotations()["argocd.argoproj.io/hook"])}
}

func (o *observer) jobEvents(newObj, oldObj *unstructured.Unstructured) {
	if newObj == nil {
		if oldObj != nil {
			o.tl.emit("job-deleted", subjectOf(oldObj), hookExtra(oldObj)...)
		}
		return
	}
	s := subjectOf(newObj)
	o.mu.Lock()
	o.jobWave[newObj.GetNamespace()+"/"+newObj.GetName()] = s.wave
	o.mu.Unlock()
	if oldObj == nil {
		o.tl.emit("job-created", s, hookExtra(newObj)...)
	}
	started := func(u *unstructured.Unstructured) bool {
		if u == nil {
			return false
		}
		_, ok, _ := unstructured.NestedString(u.Object, "status", "startTime")
		return ok
	}
	if started(newObj) && !started(oldObj) {
		o.tl.emit("job-started", s)
	}
	for _, c := range []struct{ cond, event string }{{"Complete", "job-succeeded"}, {"Failed", "job-failed"}} {
		now, reason, msg := condition(newObj, c.cond)
		was := false
		if oldObj != nil {
			was, _, _ = condition(oldObj, c.cond)
		}
		if now && !was {
			failed, _, _ := unstructured.NestedInt64(newObj.Object, "status", "failed")
			o.tl.emit(c.event, s, f("reason", reason), f("message", msg), f("failedPods", failed))
		}
	}
}

// podEvents reports a Pod becoming Ready, with its top owner (Deployment, Job ...) and that
// owner's wave.
func (o *observer) podEvents(newObj *unstructured.Unstructured, ns map[kube.ResourceKey]*cache.Resource) {
	if newObj == nil {
		return
	}
	ready, _, _ := condition(newObj, "Ready")
	id := newObj.GetNamespace() + "/" + newObj.GetName()
	o.mu.Lock()
	seen := o.readyPods[id]
	if ready {
		o.readyPods[id] = true
	}
	o.mu.Unlock()
	if !ready || seen {
		return
	}
	owner := topOwner(newObj, ns)
	if owner == nil || argo.NewResourceTracking().GetAppName(owner, "", v1alpha1.TrackingMethodAnnotation, "") != o.appName {
		return
	}
	s := subjectOf(newObj)
	s.wave = waveOf(owner)
	o.tl.emit("pod-ready", s, f("owner", owner.GetKind()+"/"+owner.GetName()))
}

func topOwner(un *unstructured.Unstructured, ns map[kube.ResourceKey]*cache.Resource) *unstructured.Unstructured {
	var top *unstructured.Unstructured
	cur := un
	for depth := 0; depth < 8 && cur != nil; depth++ {
		refs := cur.GetOwnerReferences()
		if len(refs) == 0 {
			break
		}
		gv, _ := schema.ParseGroupVersion(refs[0].APIVersion)
		r := ns[kube.ResourceKey{Group: gv.Group, Kind: refs[0].Kind, Namespace: un.GetNamespace(), Name: refs[0].Name}]
		if r == nil || r.Resource == nil {
			break
		}
		top, cur = r.Resource, r.Resource
	}
	return top
}

// taskLogEntry is one line of the environment's task log.
type taskLogEntry struct {
	Event     string `json:"event"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Job       string `json:"job"`
	Container string `json:"container"`
	Attempt   int    `json:"attempt"`
	Exit      *int   `json:"exit"`
}

// tailTaskLog follows the task log from its current end (earlier syncs wrote what is before).
func (o *observer) tailTaskLog(ctx context.Context, path string) {
	if path == "" {
		return
	}
	var offset int64
	if st, err := os.Stat(path); err == nil {
		offset = st.Size()
	}
	var partial []byte
	for ctx.Err() == nil {
		if file, err := os.Open(path); err == nil {
			if _, err := file.Seek(offset, io.SeekStart); err == nil {
				r := bufio.NewReader(file)
				for {
					line, err := r.ReadBytes('\n')
					offset += int64(len(line))
					if err != nil {
						partial = append(partial, line...)
						break
					}
					o.taskExec(append(partial, line...))
					partial = nil
				}
			}
			file.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (o *observer) taskExec(line []byte) {
	var e taskLogEntry
	if err := json.Unmarshal(line, &e); err != nil {
		return
	}
	phase := map[string]string{"task-exec-start": "start", "task-exec-end": "end"}[e.Event]
	if phase == "" {
		return
	}
	// The task runner can report a pod before the cluster cache has seen its Job, so the
	// app's tasks are those in its namespace; the wave comes from Git or the live Job.
	if e.Namespace != o.namespace {
		return
	}
	o.mu.Lock()
	wave, ok := o.targetWave[e.Job]
	if !ok {
		wave = o.jobWave[e.Namespace+"/"+e.Job]
	}
	o.mu.Unlock()
	extra := []field{f("phase", phase), f("job", e.Job), f("container", e.Container), f("attempt", e.Attempt)}
	if e.Exit != nil {
		extra = append(extra, f("exit", *e.Exit))
	}
	o.tl.emit("task-exec", subject{kind: "Pod", namespace: e.Namespace, name: e.Pod, wave: wave}, extra...)
}

// stampingKubectl is the controller's kubectl with every real (not dry-run) apply, create,
// replace and delete written to the timeline when it returns.
type stampingKubectl struct {
	kube.Kubectl
	tl *timeline
}

func (k *stampingKubectl) ManageResources(config *rest.Config) (kube.ResourceOperations, func(), error) {
	ops, cleanup, err := k.Kubectl.ManageResources(config)
	if err != nil {
		return nil, nil, err
	}
	return &stampingOps{ResourceOperations: ops, tl: k.tl}, cleanup, nil
}

func (k *stampingKubectl) DeleteResource(ctx context.Context, config *rest.Config, gvk schema.GroupVersionKind, name, namespace string, opts metav1.DeleteOptions) error {
	err := k.Kubectl.DeleteResource(ctx, config, gvk, name, namespace, opts)
	if err == nil {
		// The engine's only kubectl delete is a prune (pruneObject); hooks are deleted with
		// its dynamic client (deleteResource), seen here as job-deleted from the cluster.
		s := subject{kind: gvk.Kind, namespace: namespace, name: name}
		event := "prune"
		k.tl.emit(event, s)
	}
	return err
}

type stampingOps struct {
	kube.ResourceOperations
	tl *timeline
}

func (o *stampingOps) stamp(obj *unstructured.Unstructured, how string, dry cmdutil.DryRunStrategy, err error) {
	if dry != cmdutil.DryRunNone {
		return
	}
	extra := append([]field{f("how", how)}, hookExtra(obj)...)
	if err != nil {
		extra = append(extra, f("error", err.Error()))
	}
	o.tl.emit("apply", subjectOf(obj), extra...)
}

func (o *stampingOps) ApplyResource(ctx context.Context, obj *unstructured.Unstructured, dry cmdutil.DryRunStrategy, force, validate, ssa bool, manager string) (string, error) {
	msg, err := o.ResourceOperations.ApplyResource(ctx, obj, dry, force, validate, ssa, manager)
	o.stamp(obj, "apply", dry, err)
	return msg, err
}

func (o *stampingOps) ReplaceResource(ctx context.Context, obj *unstructured.Unstructured, dry cmdutil.DryRunStrategy, force bool) (string, error) {
	msg, err := o.ResourceOperations.ReplaceResource(ctx, obj, dry, force)
	o.stamp(obj, "replace", dry, err)
	return msg, err
}

func (o *stampingOps) CreateResource(ctx context.Context, obj *unstructured.Unstructured, dry cmdutil.DryRunStrategy, validate bool) (string, error) {
	msg, err := o.ResourceOperations.CreateResource(ctx, obj, dry, validate)
	o.stamp(obj, "create", dry, err)
	return msg, err
}

// setTargets records the waves of the Jobs in Git (destination namespace).
func (o *observer) setTargets(targets []*unstructured.Unstructured) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.targetWave = map[string]*int64{}
	for _, t := range targets {
		if t.GetKind() == "Job" && t.GetNamespace() == o.namespace {
			o.targetWave[t.GetName()] = waveOf(t)
		}
	}
}
