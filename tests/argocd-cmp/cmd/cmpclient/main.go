// Command cmpclient drives a running argocd-cmp-server the way argocd-repo-server does, with
// argo-cd's own client packages: it finds the plugin socket by name in
// $ARGOCD_PLUGINSOCKFILEPATH (util/app/discovery), asks CheckPluginConfiguration, streams the
// repository as a tgz (util/cmp: one ManifestRequestMetadata message, then the tgz in chunks of
// $ARGOCD_CMP_CHUNK_SIZE bytes) and converts the returned manifests with gitops-engine's
// kube.SplitYAML, as repo-server does before it tracks and caches them.
//
// For every case under -cases (tests/fixtures/cmp/<case>/{repo/,case.json,expected.*}) it
// copies repo/ to a temp dir, creates the symlinks case.json lists, sends a GenerateManifest
// request with case.json's app_path and env, and checks the answer:
//   - expected.yaml: the objects returned equal the objects of expected.yaml (compared
//     parsed, in order), one manifest string per object; and they also equal a YAML 1.2
//     reading of expected.yaml (go.yaml.in/yaml/v3), so that nothing in klt-render's output
//     is retyped by the YAML 1.1 rules of the sigs.k8s.io/yaml conversion that Argo CD applies
//     (an unquoted `on` would be);
//   - expected.stderr: the request fails and the gRPC error text contains its line.
//
// A case listed in -differences (lines "CASE<TAB>TEXT", # comments) is an error case where
// the real server is known to differ from the emulated harness: its error text must contain
// TEXT instead of expected.stderr's line (and an entry whose case meets expected.stderr after
// all fails as stale, so the list stays true).
//
// Two checks of the plugin configuration come on top: GetParametersAnnouncement returns the
// static parameters of plugin.yaml, and an Application without a plugin name (`plugin: {}`)
// is not matched (plugin.yaml has no discovery rule).
//
// It prints one PASS/FAIL line per check and `argocd-cmp-server: N passed, M failed`; the
// exit code is 1 when a check failed, 2 on a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/gogo/protobuf/proto" // argo-cd's messages are gogo-generated
	grpc_retry "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	log "github.com/sirupsen/logrus"
	yaml12 "go.yaml.in/yaml/v3"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/kube"
	pluginclient "github.com/argoproj/argo-cd/v3/cmpserver/apiclient"
	"github.com/argoproj/argo-cd/v3/cmpserver/plugin"
	"github.com/argoproj/argo-cd/v3/util/app/discovery"
	"github.com/argoproj/argo-cd/v3/util/cmp"
	utilio "github.com/argoproj/argo-cd/v3/util/io"
)

// requestTimeout is the repo-server's default deadline for a manifest request
// (--repo-server-timeout-seconds, 60 s).
const requestTimeout = 60 * time.Second

type caseSpec struct {
	AppPath  string            `json:"app_path"`
	Env      map[string]string `json:"env"`
	Command  string            `json:"command"`
	Symlinks map[string]string `json:"symlinks"`
}

type variants map[string]string

func (v variants) String() string { return fmt.Sprint(map[string]string(v)) }

func (v variants) Set(s string) error {
	name, plugin, ok := strings.Cut(s, "=")
	if !ok || name == "" || plugin == "" {
		return fmt.Errorf("want VARIANT=PLUGIN, got %q", s)
	}
	v[name] = plugin
	return nil
}

type runner struct {
	casesDir    string
	workDir     string
	plugin      string
	variants    variants
	pluginConf  string
	differences map[string]string
	notes       []string // printed under the check's PASS/FAIL line
	verbose     bool
	passed      int
	failed      int
	failedNames []string
}

func main() {
	r := &runner{variants: variants{}}
	flag.StringVar(&r.casesDir, "cases", "", "directory of CMP cases (tests/fixtures/cmp)")
	flag.StringVar(&r.workDir, "work", "", "scratch directory for the repository copies")
	flag.StringVar(&r.plugin, "plugin", "klt-render", "plugin (socket) name for cases without a command variant")
	flag.Var(r.variants, "variant", "VARIANT=PLUGIN: plugin name for cases whose case.json has \"command\": VARIANT (repeatable)")
	flag.StringVar(&r.pluginConf, "plugin-config", "", "config dir of -plugin (holding plugin.yaml): check its parameter announcements and discovery")
	flag.BoolVar(&r.verbose, "v", false, "print the error text of every error case")
	differences := flag.String("differences", "", "file of known differences from the harness: CASE<TAB>TEXT lines")
	flag.Parse()
	if r.casesDir == "" || r.workDir == "" || os.Getenv("ARGOCD_PLUGINSOCKFILEPATH") == "" {
		fmt.Fprintln(os.Stderr, "usage: ARGOCD_PLUGINSOCKFILEPATH=DIR cmpclient -cases DIR -work DIR [-plugin NAME] [-variant V=NAME]... [-plugin-config DIR] [CASE...]")
		os.Exit(2)
	}
	log.SetLevel(log.ErrorLevel) // argo-cd's client packages log through logrus
	var err error
	if r.differences, err = readDifferences(*differences); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}

	names := flag.Args()
	if len(names) == 0 {
		entries, err := os.ReadDir(r.casesDir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for _, e := range entries {
			if _, err := os.Stat(filepath.Join(r.casesDir, e.Name(), "case.json")); err == nil {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
	}
	if len(names) == 0 {
		fmt.Fprintf(os.Stderr, "no cases in %s\n", r.casesDir)
		os.Exit(2)
	}

	if r.pluginConf != "" {
		r.record("plugin-config: parameter announcements", r.checkAnnouncements(names[0]))
		r.record("plugin-config: no discovery (unnamed app not matched)", r.checkNoDiscovery(names[0]))
	}
	for _, name := range names {
		r.record(name, r.runCase(name))
	}

	fmt.Printf("argocd-cmp-server: %d passed, %d failed\n", r.passed, r.failed)
	if r.failed > 0 {
		fmt.Printf("failed: %s\n", strings.Join(r.failedNames, " "))
		os.Exit(1)
	}
}

func (r *runner) record(name string, err error) {
	if err != nil {
		r.failed++
		r.failedNames = append(r.failedNames, name)
		fmt.Printf("FAIL %s\n     %s\n", name, strings.ReplaceAll(err.Error(), "\n", "\n     "))
	} else {
		r.passed++
		fmt.Printf("PASS %s\n", name)
	}
	for _, note := range r.notes {
		fmt.Printf("     %s\n", note)
	}
	r.notes = nil
}

func (r *runner) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// checkout copies a case's repo/ into a fresh directory work/<as>/repo (keeping symlinks) and
// creates the symlinks of case.json. Returns the repository root.
func (r *runner) checkout(name, as string, spec *caseSpec) (string, error) {
	root := filepath.Join(r.workDir, as, "repo")
	if err := os.RemoveAll(filepath.Dir(root)); err != nil {
		return "", err
	}
	if err := copyTree(filepath.Join(r.casesDir, name, "repo"), root); err != nil {
		return "", fmt.Errorf("copying repo/: %w", err)
	}
	for link, target := range spec.Symlinks {
		path := filepath.Join(root, link)
		// git stores no empty directories: the link's directory may not exist yet.
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", err
		}
		if err := os.Symlink(target, path); err != nil {
			return "", err
		}
	}
	return root, nil
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(target, out)
		case info.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(out, data, info.Mode().Perm())
		default:
			return fmt.Errorf("%s: unsupported file type %v", path, info.Mode().Type())
		}
	})
}

func readCase(dir string) (*caseSpec, error) {
	data, err := os.ReadFile(filepath.Join(dir, "case.json"))
	if err != nil {
		return nil, err
	}
	spec := &caseSpec{}
	if err := json.Unmarshal(data, spec); err != nil {
		return nil, fmt.Errorf("case.json: %w", err)
	}
	return spec, nil
}

// envList is the request's env as repo-server sends it: NAME=value strings (sorted here).
func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// connect finds the named plugin's socket the way repo-server does for an Application with
// spec.source.plugin.name set (it also calls CheckPluginConfiguration).
func connect(ctx context.Context, appPath, repoRoot, pluginName string, env []string) (utilio.Closer, pluginclient.ConfigManagementPluginServiceClient, error) {
	return discovery.DetectConfigManagementPlugin(ctx, appPath, repoRoot, pluginName, env, nil)
}

// generate sends one GenerateManifest request, as repo-server's generateManifestsCMP does.
func generate(ctx context.Context, client pluginclient.ConfigManagementPluginServiceClient, appPath, repoRoot string, env []string) (*pluginclient.ManifestResponse, error) {
	stream, err := client.GenerateManifest(ctx, grpc_retry.Disable())
	if err != nil {
		return nil, fmt.Errorf("error getting generateManifestStream: %w", err)
	}
	if err := cmp.SendRepoStream(ctx, appPath, repoRoot, stream, env, nil); err != nil {
		return nil, fmt.Errorf("error sending file to cmp-server: %w", err)
	}
	return stream.CloseAndRecv()
}

func (r *runner) runCase(name string) error {
	dir := filepath.Join(r.casesDir, name)
	spec, err := readCase(dir)
	if err != nil {
		return err
	}
	pluginName := r.plugin
	if spec.Command != "" {
		var ok bool
		if pluginName, ok = r.variants[spec.Command]; !ok {
			return fmt.Errorf("case.json names command variant %q; no -variant %s=PLUGIN given", spec.Command, spec.Command)
		}
	}
	root, err := r.checkout(name, name, spec)
	if err != nil {
		return err
	}
	appPath := filepath.Join(root, spec.AppPath)
	env := envList(spec.Env)

	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	conn, client, err := connect(ctx, appPath, root, pluginName, env)
	if err != nil {
		return fmt.Errorf("plugin %s: %w", pluginName, err)
	}
	defer utilio.Close(conn)
	resp, genErr := generate(ctx, client, appPath, root, env)

	expectedYAML := filepath.Join(dir, "expected.yaml")
	if data, err := os.ReadFile(expectedYAML); err == nil {
		if genErr != nil {
			return fmt.Errorf("expected manifests, got an error:\n%s", genErr)
		}
		if r.verbose && len(resp.GetManifests()) > 0 {
			r.note("%d manifest strings; the first: %.160s...", len(resp.GetManifests()), resp.GetManifests()[0])
		}
		return compareManifests(data, resp.GetManifests())
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	data, err := os.ReadFile(filepath.Join(dir, "expected.stderr"))
	if err != nil {
		return fmt.Errorf("neither expected.yaml nor expected.stderr: %w", err)
	}
	want := strings.TrimSpace(string(data))
	if genErr == nil {
		return fmt.Errorf("expected an error containing %q, got %d manifests", want, len(resp.GetManifests()))
	}
	got := genErr.Error()
	if s, ok := status.FromError(genErr); ok {
		got = fmt.Sprintf("rpc error: code = %s desc = %s", s.Code(), s.Message())
	}
	if r.verbose {
		r.note("error text: %s", got)
	}
	if alt, ok := r.differences[name]; ok {
		if strings.Contains(got, want) {
			return fmt.Errorf("stale known-differences entry: the error text contains expected.stderr's line after all; remove the entry\n  actual: %s", got)
		}
		if !strings.Contains(got, alt) {
			return fmt.Errorf("error text contains neither expected.stderr's line nor the known difference\n  expected:   %s\n  difference: %s\n  actual:     %s", want, alt, got)
		}
		r.note("known difference: expected.stderr's line is not in the error text, %q is", alt)
		return nil
	}
	if !strings.Contains(got, want) {
		return fmt.Errorf("error text does not contain the expected line\n  expected: %s\n  actual:   %s", want, got)
	}
	return nil
}

func readDifferences(path string) (map[string]string, error) {
	out := map[string]string{}
	if path == "" {
		return out, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, text, ok := strings.Cut(line, "\t")
		if !ok || strings.TrimSpace(text) == "" {
			return nil, fmt.Errorf("%s:%d: want CASE<TAB>TEXT", path, i+1)
		}
		out[strings.TrimSpace(name)] = strings.TrimSpace(text)
	}
	return out, nil
}

// compareManifests checks the returned manifest strings against expected.yaml: each string
// must be one object (repo-server converts each with kube.SplitYAML, which flattens lists),
// and the objects must equal expected.yaml's, in order.
func compareManifests(expectedYAML []byte, manifests []string) error {
	want, err := kube.SplitYAML(expectedYAML)
	if err != nil {
		return fmt.Errorf("expected.yaml: %w", err)
	}
	var got []*unstructured.Unstructured
	for i, m := range manifests {
		objs, err := kube.SplitYAML([]byte(m))
		if err != nil {
			// repo-server: "failed to convert CMP manifests to unstructured objects: ..."
			return fmt.Errorf("manifest %d: failed to convert CMP manifests to unstructured objects: %w", i, err)
		}
		if len(objs) != 1 {
			return fmt.Errorf("manifest %d holds %d objects, want one string per object", i, len(objs))
		}
		got = append(got, objs...)
	}
	if len(got) == 0 {
		return errors.New("no manifests returned")
	}
	var problems []string
	for i := 0; i < len(want) || i < len(got); i++ {
		switch {
		case i >= len(got):
			problems = append(problems, fmt.Sprintf("object %d missing: %s", i, describe(want[i])))
		case i >= len(want):
			problems = append(problems, fmt.Sprintf("object %d unexpected: %s", i, describe(got[i])))
		case !reflect.DeepEqual(want[i].Object, got[i].Object):
			path, w, g := firstDiff(want[i].Object, got[i].Object, "")
			problems = append(problems, fmt.Sprintf("object %d differs (%s) at %s:\n  expected: %.300s\n  actual:   %.300s", i, describe(want[i]), path, w, g))
		}
	}
	if len(problems) > 0 {
		if len(problems) > 5 {
			problems = append(problems[:5], fmt.Sprintf("... and %d more", len(problems)-5))
		}
		return fmt.Errorf("%d objects expected, %d returned\n%s", len(want), len(got), strings.Join(problems, "\n"))
	}
	return compareYAML12(expectedYAML, got)
}

// compareYAML12 reads expected.yaml with YAML 1.2 typing and compares it with what Argo CD
// received (JSON converted under YAML 1.1 rules), value by value.
func compareYAML12(expectedYAML []byte, got []*unstructured.Unstructured) error {
	dec := yaml12.NewDecoder(strings.NewReader(string(expectedYAML)))
	var docs []any
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("expected.yaml (YAML 1.2): %w", err)
		}
		if doc == nil {
			continue
		}
		if m, ok := doc.(map[string]any); ok {
			if items, ok := m["items"].([]any); ok {
				docs = append(docs, items...)
				continue
			}
		}
		docs = append(docs, doc)
	}
	if len(docs) != len(got) {
		return fmt.Errorf("YAML 1.2 reading of expected.yaml has %d objects, Argo CD got %d", len(docs), len(got))
	}
	for i := range docs {
		w, err := normalize(docs[i])
		if err != nil {
			return fmt.Errorf("expected.yaml object %d (YAML 1.2): %w", i, err)
		}
		g, err := normalize(got[i].Object)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(w, g) {
			path, wv, gv := firstDiff(w, g, "")
			return fmt.Errorf("object %d (%s): YAML 1.1 retypes a value at %s:\n  YAML 1.2 reading: %.300s\n  Argo CD got:      %.300s", i, describe(got[i]), path, wv, gv)
		}
	}
	return nil
}

// normalize makes decoded values comparable: a JSON round trip, numbers kept as text.
func normalize(v any) (any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var out any
	err = dec.Decode(&out)
	return out, err
}

// firstDiff returns the first path (in sorted key order) where two decoded objects differ,
// with both values there as JSON.
func firstDiff(want, got any, path string) (string, string, string) {
	switch w := want.(type) {
	case map[string]any:
		if g, ok := got.(map[string]any); ok {
			keys := map[string]bool{}
			for k := range w {
				keys[k] = true
			}
			for k := range g {
				keys[k] = true
			}
			sorted := make([]string, 0, len(keys))
			for k := range keys {
				sorted = append(sorted, k)
			}
			sort.Strings(sorted)
			for _, k := range sorted {
				wv, wok := w[k]
				gv, gok := g[k]
				if wok != gok || !reflect.DeepEqual(wv, gv) {
					if !wok {
						return path + "." + k, "(absent)", toJSON(gv)
					}
					if !gok {
						return path + "." + k, toJSON(wv), "(absent)"
					}
					return firstDiff(wv, gv, path+"."+k)
				}
			}
		}
	case []any:
		if g, ok := got.([]any); ok && len(g) == len(w) {
			for i := range w {
				if !reflect.DeepEqual(w[i], g[i]) {
					return firstDiff(w[i], g[i], fmt.Sprintf("%s[%d]", path, i))
				}
			}
		}
	}
	if path == "" {
		path = "."
	}
	return path, toJSON(want), toJSON(got)
}

func toJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(data)
}

func describe(o *unstructured.Unstructured) string {
	return fmt.Sprintf("%s %s/%s", o.GetObjectKind().GroupVersionKind(), o.GetNamespace(), o.GetName())
}

// checkAnnouncements asks GetParametersAnnouncement (as repo-server does for the UI's
// Parameters tab) and compares the answer with plugin.yaml's static parameters.
func (r *runner) checkAnnouncements(name string) error {
	config, err := plugin.ReadPluginConfig(r.pluginConf)
	if err != nil {
		return err
	}
	spec, err := readCase(filepath.Join(r.casesDir, name))
	if err != nil {
		return err
	}
	root, err := r.checkout(name, "announcements", spec)
	if err != nil {
		return err
	}
	appPath := filepath.Join(root, spec.AppPath)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	conn, client, err := connect(ctx, appPath, root, r.plugin, nil)
	if err != nil {
		return err
	}
	defer utilio.Close(conn)
	stream, err := client.GetParametersAnnouncement(ctx, grpc_retry.Disable())
	if err != nil {
		return err
	}
	// repo-server sends the ARGOCD_APP_* build env and plugin env here, no KUBE_* nor PARAM_*.
	env := []string{"ARGOCD_APP_NAME=" + spec.Env["ARGOCD_APP_NAME"], "ARGOCD_APP_SOURCE_PATH=" + spec.AppPath}
	if err := cmp.SendRepoStream(ctx, appPath, root, stream, env, nil); err != nil {
		return err
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	got := resp.GetParameterAnnouncements()
	want := config.Spec.Parameters.Static
	if len(got) != len(want) {
		return fmt.Errorf("%d announcements returned, plugin.yaml has %d static parameters", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(want[i], got[i]) {
			return fmt.Errorf("announcement %d: plugin.yaml has %v, server returned %v", i, want[i], got[i])
		}
	}
	return nil
}

// checkNoDiscovery: with plugin.yaml's lack of a discovery rule, an Application that does
// not name the plugin (`plugin: {}` or no source type) must not be matched by it.
func (r *runner) checkNoDiscovery(name string) error {
	spec, err := readCase(filepath.Join(r.casesDir, name))
	if err != nil {
		return err
	}
	root, err := r.checkout(name, "discovery", spec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()

	address := filepath.Join(os.Getenv("ARGOCD_PLUGINSOCKFILEPATH"), r.plugin+".sock")
	conn, client, err := pluginclient.NewConfigManagementPluginClientSet(address).NewConfigManagementPluginClient()
	if err != nil {
		return err
	}
	defer utilio.Close(conn)
	cfg, err := client.CheckPluginConfiguration(ctx, &emptypb.Empty{})
	if err != nil {
		return err
	}
	if cfg.GetIsDiscoveryConfigured() || cfg.GetProvideGitCreds() {
		return fmt.Errorf("CheckPluginConfiguration: isDiscoveryConfigured=%v provideGitCreds=%v, want false/false",
			cfg.GetIsDiscoveryConfigured(), cfg.GetProvideGitCreds())
	}
	// Probing every socket, as repo-server does for an unnamed plugin, must find none that
	// matches (only klt-render's sockets are in the directory).
	c, _, err := discovery.DetectConfigManagementPlugin(ctx, filepath.Join(root, spec.AppPath), root, "", envList(spec.Env), nil)
	if err == nil {
		utilio.Close(c)
		return errors.New("an unnamed plugin request matched a klt-render socket")
	}
	if !strings.Contains(err.Error(), "could not find plugin supporting the given repository") {
		return fmt.Errorf("unexpected error: %w", err)
	}
	return nil
}
