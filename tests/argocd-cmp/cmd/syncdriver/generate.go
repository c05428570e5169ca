package main

// Target manifests, as argocd-repo-server gets them for an Application whose source names the
// klt-render plugin: its environment (newEnv + getPluginEnvs in
// reposerver/repository/repository.go), one GenerateManifest request to the running
// argocd-cmp-server (the same argo-cd client code cmpclient uses), kube.SplitYAML of every
// returned string, then resource tracking stamped on every non-CRD object (GenerateManifests,
// repository.go:1842) and the controller's NormalizeTargetObjects step (controller/state.go:574:
// destination namespace for namespaced objects without one, tracking set again).

import (
	"context"
	"fmt"
	"sort"
	"strings"

	grpc_retry "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sversion "k8s.io/apimachinery/pkg/util/version"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/kube"
	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/app/discovery"
	"github.com/argoproj/argo-cd/v3/util/argo"
	"github.com/argoproj/argo-cd/v3/util/cmp"
)

type source struct {
	repoRoot, appPath  string // appPath relative to repoRoot
	appName, namespace string
	revision           string
	plugin             string
	params             v1alpha1.ApplicationSourcePluginParameters
	pluginEnv          v1alpha1.Env
}

// pluginEnviron is the env list repo-server sends with the request.
func (s *source) pluginEnviron(kubeVersion string, apiVersions []string) ([]string, error) {
	env := v1alpha1.Env{
		{Name: "ARGOCD_APP_NAME", Value: s.appName},
		{Name: "ARGOCD_APP_NAMESPACE", Value: s.namespace},
		{Name: "ARGOCD_APP_PROJECT_NAME", Value: "default"},
		{Name: "ARGOCD_APP_REVISION", Value: s.revision},
		{Name: "ARGOCD_APP_REVISION_SHORT", Value: s.revision[:7]},
		{Name: "ARGOCD_APP_REVISION_SHORT_8", Value: s.revision[:8]},
		{Name: "ARGOCD_APP_SOURCE_REPO_URL", Value: "https://git.example.invalid/e2e.git"},
		{Name: "ARGOCD_APP_SOURCE_PATH", Value: s.appPath},
		{Name: "ARGOCD_APP_SOURCE_TARGET_REVISION", Value: "HEAD"},
	}
	v, err := k8sversion.ParseGeneric(kubeVersion)
	if err != nil {
		return nil, fmt.Errorf("kube version %q: %w", kubeVersion, err)
	}
	vars := env.Environ()
	vars = append(vars, "KUBE_VERSION="+v.String(), "KUBE_API_VERSIONS="+strings.Join(apiVersions, ","))
	// getPluginParamEnvs: plugin env ($VAR-expanded against the build env), then parameters.
	for _, e := range s.pluginEnv {
		vars = append(vars, fmt.Sprintf("ARGOCD_ENV_%s=%s", e.Name, env.Envsubst(e.Value)))
	}
	paramEnv, err := s.params.Environ()
	if err != nil {
		return nil, fmt.Errorf("plugin parameters: %w", err)
	}
	return append(vars, paramEnv...), nil
}

// generateTargets asks the plugin for the manifests and returns them tracked and normalized.
func (s *source) generateTargets(ctx context.Context, env []string, info kube.ResourceInfoProvider) ([]*unstructured.Unstructured, error) {
	appDir := s.repoRoot + "/" + s.appPath
	closer, client, err := discovery.DetectConfigManagementPlugin(ctx, appDir, s.repoRoot, s.plugin, env, nil)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", s.plugin, err)
	}
	defer closer.Close()
	stream, err := client.GenerateManifest(ctx, grpc_retry.Disable())
	if err != nil {
		return nil, fmt.Errorf("error getting generateManifestStream: %w", err)
	}
	if err := cmp.SendRepoStream(ctx, appDir, s.repoRoot, stream, env, nil); err != nil {
		return nil, fmt.Errorf("error sending file to cmp-server: %w", err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, fmt.Errorf("CMP processing failed for application %q: error generating manifests in cmp: %w", s.appName, err)
	}
	tracking := argo.NewResourceTracking()
	track := func(u *unstructured.Unstructured) error {
		return tracking.SetAppInstance(u, "", s.appName, s.namespace, v1alpha1.TrackingMethodAnnotation, "")
	}
	var targets []*unstructured.Unstructured
	for _, m := range resp.Manifests {
		objs, err := kube.SplitYAML([]byte(m))
		if err != nil {
			return nil, fmt.Errorf("failed to convert CMP manifests to unstructured objects: %w", err)
		}
		for _, o := range objs {
			if !kube.IsCRD(o) {
				if err := track(o); err != nil {
					return nil, err
				}
			}
			targets = append(targets, o)
		}
	}
	for _, o := range targets {
		namespaced := kube.IsNamespacedOrUnknown(info, o.GroupVersionKind().GroupKind())
		switch {
		case !namespaced && o.GetNamespace() != "":
			o.SetNamespace("")
		case namespaced && o.GetNamespace() == "":
			o.SetNamespace(s.namespace)
		default:
			continue
		}
		if err := track(o); err != nil {
			return nil, err
		}
	}
	return targets, nil
}

// apiVersionStrings is util/argo.APIResourcesToStrings(resources, true), as the controller
// computes KUBE_API_VERSIONS.
func apiVersionStrings(resources []kube.APIResourceInfo) []string {
	out := argo.APIResourcesToStrings(resources, true)
	sort.Strings(out)
	return out
}
