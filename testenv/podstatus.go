// Pod status as a kubelet reports it for the task runner's pods, the end of
// a deletion, and the JSON-lines task log.

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// ownedConditions are the pod conditions a kubelet sets; others (e.g.
// DisruptionTarget from the Job controller) are kept as they are.
var ownedConditions = map[corev1.PodConditionType]bool{
	corev1.PodInitialized: true, corev1.PodReady: true, corev1.ContainersReady: true,
	corev1.PodReadyToStartContainers: true,
}

// publish writes w.status as the pod's status, keeping conditions the kubelet
// does not own, retrying on conflicts.
func (w *podWorker) publish() {
	if w.gone || w.r.ctx.Err() != nil {
		return
	}
	ctx := w.r.ctx
	pods := w.r.kc.CoreV1().Pods(w.pod.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := pods.Get(ctx, w.pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != w.pod.UID {
			return apierrors.NewNotFound(corev1.Resource("pods"), w.pod.Name)
		}
		st := *w.status.DeepCopy()
		for _, c := range cur.Status.Conditions {
			if !ownedConditions[c.Type] {
				st.Conditions = append(st.Conditions, c)
			}
		}
		cur.Status = st
		_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		w.logf("status update failed: %v", err)
	}
}

func condition(t corev1.PodConditionType, ok bool, now metav1.Time) corev1.PodCondition {
	s := corev1.ConditionFalse
	if ok {
		s = corev1.ConditionTrue
	}
	return corev1.PodCondition{Type: t, Status: s, LastTransitionTime: now}
}

// base is the status of a pod whose sandbox runs: IPs, start time, conditions.
func (w *podWorker) base(ready bool, phase corev1.PodPhase) corev1.PodStatus {
	now := metav1.Now()
	start := w.status.StartTime
	if start == nil {
		start = &now
	}
	return corev1.PodStatus{
		Phase:     phase,
		StartTime: start,
		HostIP:    fakeNodeIP, HostIPs: []corev1.HostIP{{IP: fakeNodeIP}},
		PodIP: fakePodIP, PodIPs: []corev1.PodIP{{IP: fakePodIP}},
		Conditions: []corev1.PodCondition{
			condition(corev1.PodReadyToStartContainers, phase == corev1.PodRunning || phase == corev1.PodPending, now),
			condition(corev1.PodInitialized, true, now),
			condition(corev1.ContainersReady, ready, now),
			condition(corev1.PodReady, ready, now),
		},
	}
}

func (w *podWorker) containerStatus(name string, restarts int32, state corev1.ContainerState, last *corev1.ContainerStateTerminated) corev1.ContainerStatus {
	c := w.pod.Spec.Containers[0]
	cs := corev1.ContainerStatus{
		Name: name, Image: c.Image, ImageID: "kube-testenv://" + c.Image,
		ContainerID:  fmt.Sprintf("kube-testenv://%s-%d", w.pod.UID, restarts),
		RestartCount: restarts, State: state, Ready: state.Running != nil,
		Started: new(state.Running != nil),
	}
	if last != nil {
		cs.LastTerminationState = corev1.ContainerState{Terminated: last}
	}
	return cs
}

func (w *podWorker) setWaiting(name, reason, msg string) {
	w.status = w.base(false, corev1.PodPending)
	w.status.ContainerStatuses = []corev1.ContainerStatus{w.containerStatus(name, 0,
		corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}, nil)}
	w.publish()
}

func (w *podWorker) setRunning(name string, restarts int32, last *corev1.ContainerStateTerminated, started metav1.Time) {
	w.status = w.base(true, corev1.PodRunning)
	w.status.ContainerStatuses = []corev1.ContainerStatus{w.containerStatus(name, restarts,
		corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}, last)}
	w.publish()
}

// setBackoff: the container exited and waits for its restart (still Running).
func (w *podWorker) setBackoff(name string, restarts int32, term *corev1.ContainerStateTerminated) {
	w.status = w.base(false, corev1.PodRunning)
	w.status.ContainerStatuses = []corev1.ContainerStatus{w.containerStatus(name, restarts,
		corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off restarting failed container %s", name)}}, term)}
	w.publish()
}

// setTerminated: the pod's terminal phase follows the container's exit code.
func (w *podWorker) setTerminated(name string, restarts int32, term *corev1.ContainerStateTerminated) {
	phase := corev1.PodSucceeded
	if term == nil || term.ExitCode != 0 {
		phase = corev1.PodFailed
	}
	w.status = w.base(false, phase)
	state := corev1.ContainerState{Terminated: term}
	if term == nil { // never started
		state.Terminated = &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown",
			Message: "the pod was deleted before the container started"}
	}
	w.status.ContainerStatuses = []corev1.ContainerStatus{w.containerStatus(name, restarts, state, nil)}
	w.publish()
}

// finishDeletion does what a kubelet does for a pod being deleted: report a
// terminal phase (the Job controller counts it) and remove the pod with grace
// period 0. Nothing is done when the runner merely stops.
func (w *podWorker) finishDeletion(name string, restarts int32, term *corev1.ContainerStateTerminated) {
	if w.gone || w.r.ctx.Err() != nil || w.pod.DeletionTimestamp == nil {
		return
	}
	if !isTerminal(&corev1.Pod{Status: w.status}) {
		w.setTerminated(name, restarts, term)
	}
	zero := int64(0)
	uid := w.pod.UID
	err := w.r.kc.CoreV1().Pods(w.pod.Namespace).Delete(w.r.ctx, w.pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		w.logf("finishing deletion failed: %v", err)
	}
	w.logf("deletion finished")
}

// --- task log -----------------------------------------------------------

type taskEvent struct {
	Time      string `json:"time"`
	Event     string `json:"event"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Job       string `json:"job"`
	Container string `json:"container"`
	Attempt   int    `json:"attempt"`
	Exit      *int32 `json:"exit,omitempty"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
}

func (e taskEvent) with(event string, exit *int32) taskEvent {
	e.Time = time.Now().UTC().Format(time.RFC3339Nano)
	e.Event, e.Exit = event, exit
	return e
}

// taskLog appends one JSON object per line; outputs go to FILE.out/.
type taskLog struct {
	mu   sync.Mutex
	f    *os.File
	dir  string
	path string
}

func openTaskLog(path string) (*taskLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	dir := path + ".out"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &taskLog{f: f, dir: dir, path: path}, nil
}

type outputFiles struct{ stdout, stderr string }

func (l *taskLog) outputs(namespace, pod, container string, attempt int) outputFiles {
	base := filepath.Join(l.dir, strings.Join([]string{namespace, pod, container, fmt.Sprint(attempt)}, "_"))
	return outputFiles{stdout: base + ".stdout", stderr: base + ".stderr"}
}

// write appends one event; each line is written whole so readers that tail
// the file never see half a record.
func (l *taskLog) write(e taskEvent) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.f.Write(append(b, '\n'))
}
