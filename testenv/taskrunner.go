// The task-pod runner: the kubelet of the fake node for pods of Jobs that
// klt-render renders (pod label app.kubernetes.io/managed-by=klt-render; kwok
// leaves them alone). For each such pod bound to the node it resolves what a
// kubelet resolves (resolve.go), runs `klt-render run --pod POD.json --root
// DIR` as the container's process and reports the pod's status as a kubelet
// does: Running, then Succeeded/Failed (restartPolicy Never) or, for
// OnFailure, a restart in the same pod with restartCount+1 after a short
// backoff. A deleted pod's process is stopped and the deletion finished.
// Evaluation pods (container env KLT_EVALUATION) go the same way: `klt-render
// run --pod` executes klt-evaluate (KLT_EVALUATE), which writes its summary to
// the termination log under the root; the container's terminated state
// carries it as its message, as a kubelet's does (termination.go).

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

const (
	fakeNodeIP = "192.0.2.1"
	fakePodIP  = "10.244.0.10"
	// testAnnotationPrefix: annotations of a Job (or its pod template) that
	// the runner passes on to `klt-render run --pod` (container tasks' outcome).
	testAnnotationPrefix = "testenv.klt-render.dev/"
	maxBackoff           = 10 * time.Second
	// stopGrace bounds how long a deleted pod's process may take after SIGTERM.
	stopGrace = 10 * time.Second
)

type taskRunner struct {
	ctx       context.Context
	kc        kubernetes.Interface
	kltRender string
	// kltEvaluate: passed to klt-render as KLT_EVALUATE ("" : not set).
	kltEvaluate string
	tasks       *taskLog
	logger      *log.Logger
	workDir     string

	mu      sync.Mutex
	workers map[types.UID]chan *corev1.Pod
	// done: pods whose worker has finished. A late informer event of such a pod
	// must never start its container again.
	done map[types.UID]bool
	wg   sync.WaitGroup
}

// wait returns once every pod worker has stopped its process.
func (r *taskRunner) wait() {
	if r != nil {
		r.wg.Wait()
	}
}

func startTaskRunner(ctx context.Context, kc kubernetes.Interface, o clusterOptions, logPath string) (*taskRunner, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	tasks, err := openTaskLog(o.taskLog)
	if err != nil {
		return nil, err
	}
	workDir := filepath.Join(filepath.Dir(logPath), "task-pods")
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return nil, err
	}
	r := &taskRunner{
		ctx: ctx, kc: kc, kltRender: o.kltRender, kltEvaluate: o.kltEvaluate, tasks: tasks, workDir: workDir,
		logger:  log.New(lf, "", log.LstdFlags|log.Lmicroseconds),
		workers: map[types.UID]chan *corev1.Pod{},
		done:    map[types.UID]bool{},
	}
	factory := informers.NewSharedInformerFactoryWithOptions(kc, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = managedByLabel + "=" + managedByValue
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
	}))
	inf := factory.Core().V1().Pods().Informer()
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.dispatch(obj, false) },
		UpdateFunc: func(_, obj any) { r.dispatch(obj, false) },
		DeleteFunc: func(obj any) { r.dispatch(obj, true) },
	})
	if err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	go func() {
		<-ctx.Done()
		factory.Shutdown()
	}()
	return r, nil
}

// dispatch hands the newest state of a pod to its worker (starting one for a
// new pod); a removed pod is passed on as nil.
func (r *taskRunner) dispatch(obj any, gone bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, gone = d.Obj, true
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ch, exists := r.workers[pod.UID]
	if !exists {
		if gone || isTerminal(pod) || r.done[pod.UID] {
			return // finished (possibly before we saw it): never run again
		}
		ch = make(chan *corev1.Pod, 1)
		r.workers[pod.UID] = ch
		w := &podWorker{r: r, updates: ch, pod: pod}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			w.run()
			r.mu.Lock()
			delete(r.workers, pod.UID)
			r.done[pod.UID] = true
			r.mu.Unlock()
		}()
	}
	latest := pod
	if gone {
		latest = nil
	}
	select { // keep only the newest state
	case <-ch:
	default:
	}
	ch <- latest
}

func isTerminal(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// podWorker plays the kubelet for one pod.
type podWorker struct {
	r       *taskRunner
	updates chan *corev1.Pod
	pod     *corev1.Pod // newest known state
	gone    bool        // the pod was removed from the API server
	status  corev1.PodStatus
}

func (w *podWorker) logf(format string, args ...any) {
	w.r.logger.Printf("%s/%s: %s", w.pod.Namespace, w.pod.Name, fmt.Sprintf(format, args...))
}

// next waits up to d for a newer pod state; false when the pod is gone, is
// being deleted, or the runner stops.
func (w *podWorker) next(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case p := <-w.updates:
		if p == nil {
			w.gone = true
			return false
		}
		w.pod = p
		return p.DeletionTimestamp == nil
	case <-timer.C:
		return w.pod.DeletionTimestamp == nil
	case <-w.r.ctx.Done():
		return false
	}
}

// pause waits all of d while keeping up with pod updates (the runner's own
// status writes come back as updates); false as next.
func (w *podWorker) pause(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return w.pod.DeletionTimestamp == nil
		}
		if !w.next(left) {
			return false
		}
	}
}

func (w *podWorker) run() {
	key := w.pod.Namespace + "/" + w.pod.Name
	dir, err := os.MkdirTemp(w.r.workDir, w.pod.Namespace+"."+w.pod.Name+".")
	if err != nil {
		w.logf("%v", err)
		return
	}
	defer os.RemoveAll(dir)
	container := w.pod.Spec.Containers[0].Name
	podFile, ok := w.prepare(dir)
	if !ok {
		w.finishDeletion(container, 0, nil)
		return
	}
	restarts := int32(0)
	var last *corev1.ContainerStateTerminated
	for attempt := 1; ; attempt++ {
		started := metav1.Now()
		spec := &w.pod.Spec.Containers[0]
		clearTerminationLog(filepath.Join(dir, "root"), spec)
		w.setRunning(container, restarts, last, started)
		exit, stopped := w.execute(podFile, dir, container, attempt)
		out := w.r.tasks.outputs(w.pod.Namespace, w.pod.Name, container, attempt)
		term := &corev1.ContainerStateTerminated{
			ExitCode: exit, StartedAt: started, FinishedAt: metav1.Now(), Reason: reasonFor(exit),
			Message: terminationMessage(filepath.Join(dir, "root"), spec, exit, out),
		}
		if stopped {
			w.finishDeletion(container, restarts, term)
			return
		}
		if exit == 0 || w.pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			w.setTerminated(container, restarts, term)
			w.logf("container %s exited %d; pod %s", container, exit, w.status.Phase)
			for w.next(time.Hour) {
			}
			w.finishDeletion(container, restarts, term)
			return
		}
		// restartPolicy OnFailure (or Always): the kubelet restarts the container
		// in the same pod after a backoff; restartCount counts the restarts.
		backoff := min(time.Second<<min(attempt-1, 4), maxBackoff)
		w.setBackoff(container, restarts, term)
		w.logf("container %s exited %d; restarting in %s (%s)", container, exit, backoff, key)
		if !w.pause(backoff) {
			w.finishDeletion(container, restarts, term)
			return
		}
		restarts++
		last = term
	}
}

// prepare resolves env and volumes into dir (retrying while, for example, a
// Secret is missing, as a kubelet does) and writes the resolved pod; false
// when the pod went away first.
func (w *podWorker) prepare(dir string) (string, bool) {
	root := filepath.Join(dir, "root")
	// As a kubelet reports a pod it has accepted: Pending, the container being created.
	w.setWaiting(w.pod.Spec.Containers[0].Name, "ContainerCreating", "")
	for {
		if w.pod.DeletionTimestamp != nil {
			return "", false
		}
		podFile, err := w.resolve(root, filepath.Join(dir, "pod.json"))
		if err == nil {
			return podFile, true
		}
		var ce configError
		reason := "CreateContainerConfigError"
		if !errors.As(err, &ce) {
			reason = "RunContainerError"
		}
		w.logf("%s: %v", reason, err)
		w.setWaiting(w.pod.Spec.Containers[0].Name, reason, err.Error())
		if !w.pause(2 * time.Second) {
			return "", false
		}
	}
}

// resolve writes the pod with its first container's env resolved to values,
// the Job's test annotations added, and its volumes under root.
func (w *podWorker) resolve(root, podFile string) (string, error) {
	ctx := w.r.ctx
	pod := w.pod.DeepCopy()
	res := resolver{kc: w.r.kc, pod: pod}
	c := &pod.Spec.Containers[0]
	env, err := res.env(ctx, c)
	if err != nil {
		return "", err
	}
	c.Env, c.EnvFrom = env, nil
	if err := os.RemoveAll(root); err != nil {
		return "", err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", err
	}
	if err := res.volumes(ctx, c, root); err != nil {
		return "", err
	}
	if err := w.addJobAnnotations(ctx, pod); err != nil {
		return "", err
	}
	b, err := json.Marshal(pod)
	if err != nil {
		return "", err
	}
	return podFile, os.WriteFile(podFile, b, 0o600)
}

// addJobAnnotations copies the owning Job's testenv annotations onto the pod
// (the pod's own win): a scenario can set them on the Job it applies.
func (w *podWorker) addJobAnnotations(ctx context.Context, pod *corev1.Pod) error {
	job := jobName(pod)
	if job == "" {
		return nil
	}
	j, err := w.r.kc.BatchV1().Jobs(pod.Namespace).Get(ctx, job, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for k, v := range j.Annotations {
		if len(k) > len(testAnnotationPrefix) && k[:len(testAnnotationPrefix)] == testAnnotationPrefix {
			if _, set := pod.Annotations[k]; !set {
				if pod.Annotations == nil {
					pod.Annotations = map[string]string{}
				}
				pod.Annotations[k] = v
			}
		}
	}
	return nil
}

func jobName(pod *corev1.Pod) string {
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Job" {
			return o.Name
		}
	}
	return ""
}

func reasonFor(exit int32) string {
	if exit == 0 {
		return "Completed"
	}
	return "Error"
}

// execute runs one attempt of the container: `klt-render run --pod`, its
// output into files beside the task log. stopped is true when the pod was
// deleted (or the runner stopped) and the process was stopped for it.
func (w *podWorker) execute(podFile, dir, container string, attempt int) (exit int32, stopped bool) {
	out := w.r.tasks.outputs(w.pod.Namespace, w.pod.Name, container, attempt)
	stdout, err1 := os.Create(out.stdout)
	stderr, err2 := os.Create(out.stderr)
	if err := errors.Join(err1, err2); err != nil {
		w.logf("%v", err)
		return 128, false
	}
	defer stdout.Close()
	defer stderr.Close()
	cmd := exec.Command(w.r.kltRender, "run", "--pod", podFile, "--root", filepath.Join(dir, "root"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, stdout, stderr
	cmd.Dir = dir
	cmd.Env = os.Environ()
	if w.r.kltEvaluate != "" {
		cmd.Env = append(cmd.Env, "KLT_EVALUATE="+w.r.kltEvaluate)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	base := taskEvent{Namespace: w.pod.Namespace, Pod: w.pod.Name, Job: jobName(w.pod),
		Container: container, Attempt: attempt, Stdout: out.stdout, Stderr: out.stderr}
	if err := cmd.Start(); err != nil {
		w.logf("cannot start %s: %v", w.r.kltRender, err)
		fmt.Fprintf(stderr, "kube-testenv: cannot start %s: %v\n", w.r.kltRender, err)
		return 128, false
	}
	w.r.tasks.write(base.with("task-exec-start", nil))
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopped = w.waitOrStop(cmd, done)
	code := int32(cmd.ProcessState.ExitCode())
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int32(ws.Signal())
	}
	w.r.tasks.write(base.with("task-exec-end", &code))
	return code, stopped
}

// waitOrStop waits for the process; when the pod is deleted first it sends
// SIGTERM (klt-render passes it to the task's process group and kills that
// after its grace period), then SIGKILL after stopGrace.
func (w *podWorker) waitOrStop(cmd *exec.Cmd, done <-chan struct{}) bool {
	for {
		select {
		case <-done:
			return false
		case p := <-w.updates:
			if p == nil {
				w.gone = true
			} else if w.pod = p; p.DeletionTimestamp == nil {
				continue
			}
		case <-w.r.ctx.Done():
		}
		w.logf("pod deleted or runner stopping: stopping the container")
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(stopGrace):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		return true
	}
}
