// What a kubelet resolves from the API server before it starts a container:
// env values (with $(VAR) expansion), valueFrom secretKeyRef / configMapKeyRef
// / fieldRef, envFrom, and configMap / secret / emptyDir volumes written as
// files under a root directory at their mountPath (subPath too).

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"
)

// configError is what a kubelet reports as CreateContainerConfigError: the
// container cannot start yet (a missing Secret may still be created).
type configError struct{ msg string }

func (e configError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error {
	return configError{fmt.Sprintf(format, args...)}
}

// resolver reads Secrets and ConfigMaps of one pod's namespace.
type resolver struct {
	kc  kubernetes.Interface
	pod *corev1.Pod
}

func (r resolver) secret(ctx context.Context, name string, optional *bool) (map[string][]byte, error) {
	s, err := r.kc.CoreV1().Secrets(r.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if optional != nil && *optional {
			return nil, nil
		}
		return nil, configErrorf("secret %q not found", name)
	}
	if err != nil {
		return nil, err
	}
	data := map[string][]byte{}
	for k, v := range s.Data {
		data[k] = v
	}
	for k, v := range s.StringData { // never stored, but harmless
		data[k] = []byte(v)
	}
	return data, nil
}

func (r resolver) configMap(ctx context.Context, name string, optional *bool) (map[string][]byte, error) {
	cm, err := r.kc.CoreV1().ConfigMaps(r.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if optional != nil && *optional {
			return nil, nil
		}
		return nil, configErrorf("configmap %q not found", name)
	}
	if err != nil {
		return nil, err
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return data, nil
}

// env resolves the container's environment in the kubelet's order: envFrom
// first, then env, each value expanded against what came before.
func (r resolver) env(ctx context.Context, c *corev1.Container) ([]corev1.EnvVar, error) {
	var out []corev1.EnvVar
	seen := map[string]string{}
	set := func(name, value string) {
		if _, ok := seen[name]; ok {
			for i := range out {
				if out[i].Name == name {
					out[i].Value = value
				}
			}
		} else {
			out = append(out, corev1.EnvVar{Name: name, Value: value})
		}
		seen[name] = value
	}
	for _, from := range c.EnvFrom {
		data, err := r.envFromSource(ctx, from)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(from.Prefix+k, string(data[k]))
		}
	}
	for _, e := range c.Env {
		value, found, err := r.envValue(ctx, e, seen)
		if err != nil {
			return nil, err
		}
		if found {
			set(e.Name, value)
		}
	}
	return out, nil
}

func (r resolver) envFromSource(ctx context.Context, from corev1.EnvFromSource) (map[string][]byte, error) {
	switch {
	case from.ConfigMapRef != nil:
		return r.configMap(ctx, from.ConfigMapRef.Name, from.ConfigMapRef.Optional)
	case from.SecretRef != nil:
		return r.secret(ctx, from.SecretRef.Name, from.SecretRef.Optional)
	}
	return nil, configErrorf("envFrom: only configMapRef and secretRef are supported by kube-testenv")
}

// envValue is one env entry's value; found is false for a missing optional key.
func (r resolver) envValue(ctx context.Context, e corev1.EnvVar, before map[string]string) (string, bool, error) {
	if e.ValueFrom == nil {
		return expansion.Expand(e.Value, expansion.MappingFuncFor(before)), true, nil
	}
	var data map[string][]byte
	var key, what string
	var optional *bool
	var err error
	switch vf := e.ValueFrom; {
	case vf.SecretKeyRef != nil:
		key, optional, what = vf.SecretKeyRef.Key, vf.SecretKeyRef.Optional, "secret "+vf.SecretKeyRef.Name
		data, err = r.secret(ctx, vf.SecretKeyRef.Name, optional)
	case vf.ConfigMapKeyRef != nil:
		key, optional, what = vf.ConfigMapKeyRef.Key, vf.ConfigMapKeyRef.Optional, "configmap "+vf.ConfigMapKeyRef.Name
		data, err = r.configMap(ctx, vf.ConfigMapKeyRef.Name, optional)
	case vf.FieldRef != nil:
		v, err := r.field(vf.FieldRef.FieldPath)
		return v, err == nil, err
	default:
		return "", false, configErrorf("env %s: only secretKeyRef, configMapKeyRef and fieldRef are supported by kube-testenv", e.Name)
	}
	if err != nil {
		return "", false, err
	}
	v, ok := data[key]
	if !ok {
		if optional != nil && *optional {
			return "", false, nil
		}
		return "", false, configErrorf("couldn't find key %s in %s", key, what)
	}
	return string(v), true, nil
}

// field is a downward-API fieldRef of the pod.
func (r resolver) field(path string) (string, error) {
	p := r.pod
	switch path {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return string(p.UID), nil
	case "spec.nodeName":
		return p.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return p.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return fakeNodeIP, nil
	case "status.podIP":
		return fakePodIP, nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": p.Labels, "metadata.annotations": p.Annotations} {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok {
			return m[strings.TrimSuffix(rest, "']")], nil
		}
	}
	return "", configErrorf("fieldRef %s is not supported by kube-testenv", path)
}

// volumes writes the container's mounted volumes under root at their
// mountPath: a directory of one file per key, or one file with subPath.
func (r resolver) volumes(ctx context.Context, c *corev1.Container, root string) error {
	for _, m := range c.VolumeMounts {
		vol := findVolume(r.pod, m.Name)
		if vol == nil {
			return configErrorf("volume %q of mount %s is not in the pod", m.Name, m.MountPath)
		}
		files, err := r.volumeFiles(ctx, vol)
		if err != nil {
			return err
		}
		if err := writeMount(root, m, files); err != nil {
			return err
		}
	}
	return nil
}

func findVolume(pod *corev1.Pod, name string) *corev1.Volume {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	return nil
}

// volumeFiles is a volume's content as relative path → bytes (nil: an empty dir).
func (r resolver) volumeFiles(ctx context.Context, v *corev1.Volume) (map[string][]byte, error) {
	var data map[string][]byte
	var items []corev1.KeyToPath
	var err error
	switch {
	case v.ConfigMap != nil:
		items = v.ConfigMap.Items
		data, err = r.configMap(ctx, v.ConfigMap.Name, v.ConfigMap.Optional)
	case v.Secret != nil:
		items = v.Secret.Items
		data, err = r.secret(ctx, v.Secret.SecretName, v.Secret.Optional)
	case v.EmptyDir != nil:
		return map[string][]byte{}, nil
	default:
		return nil, configErrorf("volume %q: only configMap, secret and emptyDir volumes are supported by kube-testenv", v.Name)
	}
	if err != nil || len(items) == 0 {
		return data, err
	}
	files := map[string][]byte{}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			return nil, configErrorf("volume %q: key %s not found", v.Name, it.Key)
		}
		files[it.Path] = b
	}
	return files, nil
}

// writeMount places files under root+mountPath; with subPath only that entry,
// at mountPath itself.
func writeMount(root string, m corev1.VolumeMount, files map[string][]byte) error {
	dest := filepath.Join(root, filepath.FromSlash(m.MountPath))
	if !strings.HasPrefix(dest, root+string(filepath.Separator)) {
		return configErrorf("mountPath %q leaves the pod's root", m.MountPath)
	}
	if m.SubPath != "" {
		b, ok := files[m.SubPath]
		if !ok {
			// A subPath into an empty dir (or a missing key) is an empty directory.
			return os.MkdirAll(dest, 0o755)
		}
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dest, b, 0o644)
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	for rel, b := range files {
		p := filepath.Join(dest, filepath.FromSlash(rel))
		if !strings.HasPrefix(p, dest+string(filepath.Separator)) {
			return configErrorf("volume path %q leaves its mount", rel)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
