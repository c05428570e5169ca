// The fake node: kwok's controllers (sigs.k8s.io/kwok, embedded as a library)
// play the kubelet of one Node for ordinary pods, with kwok's own default
// node and pod Stages. Pods of klt-render Jobs are excluded from every pod
// Stage: the task runner (taskrunner.go) plays the kubelet for those.

package main

import (
	"context"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	"sigs.k8s.io/kwok/pkg/apis/internalversion"
	"sigs.k8s.io/kwok/pkg/client/clientset/versioned"
	"sigs.k8s.io/kwok/pkg/config"
	"sigs.k8s.io/kwok/pkg/kwok/controllers"
	kwoklog "sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/kwok/pkg/utils/client"
)

const (
	// nodeName is the one Node of the cluster.
	nodeName = "kwok-node-0"
	// managedByLabel marks pod templates of Jobs that klt-render renders.
	managedByLabel = "app.kubernetes.io/managed-by"
	managedByValue = "klt-render"
)

// kwokStages are kwok's default Stages (what `kwokctl create cluster` uses),
// with every pod Stage told to leave klt-render's task pods alone.
func kwokStages() (map[internalversion.StageResourceRef][]*internalversion.Stage, error) {
	out := map[internalversion.StageResourceRef][]*internalversion.Stage{}
	exclude := internalversion.MatchExpression{JQ: &internalversion.SelectorJQ{
		Key:      fmt.Sprintf(".metadata.labels[%q]", managedByLabel),
		Operator: internalversion.SelectorOpNotIn,
		Values:   []string{managedByValue},
	}}
	for _, raw := range []string{nodefast.DefaultNodeInit, nodeheartbeat.DefaultNodeHeartbeat,
		podfast.DefaultPodReady, podfast.DefaultPodComplete, podfast.DefaultPodDelete} {
		stage, err := config.UnmarshalWithType[*internalversion.Stage](raw)
		if err != nil {
			return nil, err
		}
		ref := stage.Spec.ResourceRef
		if ref.Kind == "Pod" {
			if stage.Spec.Selector == nil {
				stage.Spec.Selector = &internalversion.StageSelector{}
			}
			stage.Spec.Selector.MatchExpressions = append(stage.Spec.Selector.MatchExpressions, exclude)
		}
		out[ref] = append(out[ref], stage)
	}
	return out, nil
}

// fakeNode is the Node kwok manages: what kwokctl's node template creates,
// with room for many pods and no taints.
func fakeNode() *corev1.Node {
	qty := resource.MustParse
	list := corev1.ResourceList{"cpu": qty("32"), "memory": qty("256Gi"), "pods": qty("110")}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        nodeName,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels: map[string]string{
				"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
				"kubernetes.io/hostname": nodeName, "type": "kwok",
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.0.0/24", PodCIDRs: []string{"10.244.0.0/24"}},
		Status: corev1.NodeStatus{
			Allocatable: list,
			Capacity:    list,
			Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.1"}},
			NodeInfo:    corev1.NodeSystemInfo{Architecture: "amd64", OperatingSystem: "linux", KubeletVersion: "fake"},
		},
	}
}

// startKwok starts kwok's controller for the fake node, the way kwok's own
// command does (pkg/kwok/cmd/root.go), logging to logOut.
func startKwok(ctx context.Context, kubeconfig string, logOut io.Writer) error {
	ctx = kwoklog.NewContext(ctx, kwoklog.NewLogger(logOut, kwoklog.LevelInfo))
	stages, err := kwokStages()
	if err != nil {
		return fmt.Errorf("kwok stages: %w", err)
	}
	cs, err := client.NewClientset("", kubeconfig)
	if err != nil {
		return err
	}
	restConfig, err := cs.ToRESTConfig()
	if err != nil {
		return err
	}
	dynamicClient, err := cs.ToDynamicClient()
	if err != nil {
		return err
	}
	restMapper, err := cs.ToRESTMapper()
	if err != nil {
		return err
	}
	restClient, err := rest.RESTClientFor(restConfig)
	if err != nil {
		return err
	}
	typedClient, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	kwokClient, err := versioned.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	if _, err := typedClient.CoreV1().Nodes().Create(ctx, fakeNode(), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating node %s: %w", nodeName, err)
	}
	ctr, err := controllers.NewController(controllers.Config{
		Clock:                      clock.RealClock{},
		DynamicClient:              dynamicClient,
		RESTClient:                 restClient,
		RESTMapper:                 restMapper,
		ImpersonatingDynamicClient: cs.ToImpersonatingDynamicClient(),
		ImpersonatingTypedClient:   cs.ToImpersonatingTypedClient(),
		TypedClient:                typedClient,
		TypedKwokClient:            kwokClient,
		ManageSingleNode:           nodeName,
		CIDR:                       "10.244.0.0/24",
		NodeIP:                     "192.0.2.1",
		NodeName:                   nodeName,
		LocalStages:                stages,
		PodPlayStageParallelism:    4,
		NodePlayStageParallelism:   1,
		PodsOnNodeSyncParallelism:  1,
		ID:                         "kube-testenv",
	})
	if err != nil {
		return err
	}
	return ctr.Start(ctx)
}

// waitNodeReady waits until the fake node reports Ready (kwok's node-initialize Stage).
func waitNodeReady(ctx context.Context, kc kubernetes.Interface, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		node, err := kc.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err == nil {
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s not Ready within %s (last error: %v)", nodeName, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
