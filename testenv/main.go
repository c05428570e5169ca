// Command kube-testenv runs a real kube-apiserver with an embedded etcd, all
// in one process and listening on 127.0.0.1 only, for integration tests.
//
//	kube-testenv --dir DIR [--kubeconfig PATH] [--port N] [-- EXTRA-APISERVER-FLAGS...]
//
// It generates a CA, a serving certificate for 127.0.0.1/localhost, a
// service-account key pair and an admin client certificate (CN=admin,
// O=system:masters) under DIR/pki, starts etcd (data in DIR/etcd) and the API
// server, waits for /readyz, writes a self-contained kubeconfig and prints
// exactly one line "READY <kubeconfig>" on stdout. SIGTERM or SIGINT shuts the
// API server down, stops etcd and exits 0.
//
// With --cluster the same process is a small cluster (cluster.go): the
// kube-controller-manager and kube-scheduler, a kwok node (kwok.go) and the
// task-pod runner that plays the kubelet for klt-render's Job pods
// (taskrunner.go); READY then also waits for the node and the controllers.
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/server/flagz"
	"k8s.io/client-go/rest"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/cli/globalflag"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/featuregate"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

const (
	loopback          = "127.0.0.1"
	serviceCIDR       = "10.0.0.0/24"
	firstServiceIP    = "10.0.0.1"
	shutdownTimeout   = 60 * time.Second
	etcdStartTimeout  = 60 * time.Second
	defaultReadyLimit = 120 * time.Second
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kube-testenv: "+format+"\n", args...)
}

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("kube-testenv", flag.ContinueOnError)
	dir := fs.String("dir", "", "working directory for certificates, etcd data, logs (created if missing; default: a fresh temp dir removed on exit)")
	kubeconfig := fs.String("kubeconfig", "", "where to write the admin kubeconfig (default DIR/kubeconfig)")
	port := fs.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (0: pick a free port)")
	readyTimeout := fs.Duration("ready-timeout", defaultReadyLimit, "give up if /readyz is not OK within this time")
	apiserverLog := fs.String("apiserver-log", "", `kube-apiserver log file (default DIR/kube-apiserver.log; "-" for stderr)`)
	verbosity := fs.Int("v", 0, "kube-apiserver log verbosity")
	var cl clusterOptions
	fs.BoolVar(&cl.enabled, "cluster", false, "also run kube-controller-manager, kube-scheduler, a kwok node and the task-pod runner (see README)")
	fs.StringVar(&cl.kltRender, "klt-render", "", "with --cluster: the klt-render binary that runs task pods (default: klt-render on PATH)")
	fs.StringVar(&cl.kltEvaluate, "klt-evaluate", "", "with --cluster: the klt-evaluate binary for evaluation pods (default: $KLT_EVALUATE, else beside --klt-render, else klt-render's own lookup)")
	fs.StringVar(&cl.taskLog, "task-log", "", "with --cluster: JSON-lines log of task executions (default DIR/tasks.jsonl); outputs beside it")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: kube-testenv [flags] [-- extra kube-apiserver flags]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	extraArgs := fs.Args()

	// Catch signals from the very start so that a stop during start-up also
	// cleans up. A second signal forces an immediate exit.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		s := <-sigs
		logf("received %v, shutting down", s)
		cancel()
		s = <-sigs
		logf("received %v again, exiting immediately", s)
		os.Exit(130)
	}()

	removeDir := false
	if *dir == "" {
		d, err := os.MkdirTemp("", "kube-testenv-")
		if err != nil {
			logf("%v", err)
			return 1
		}
		*dir, removeDir = d, true
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		logf("%v", err)
		return 1
	}
	if removeDir {
		defer os.RemoveAll(absDir)
	}
	if *kubeconfig == "" {
		*kubeconfig = filepath.Join(absDir, "kubeconfig")
	}
	if *kubeconfig, err = filepath.Abs(*kubeconfig); err != nil {
		logf("%v", err)
		return 1
	}
	if *apiserverLog == "" {
		*apiserverLog = filepath.Join(absDir, "kube-apiserver.log")
	}

	if err := cl.complete(absDir); err != nil {
		logf("%v", err)
		return 2
	}
	code := serve(ctx, absDir, *kubeconfig, *port, *readyTimeout, *apiserverLog, *verbosity, cl, extraArgs)
	klog.Flush()
	return code
}

// serve runs etcd and kube-apiserver until stop is cancelled (by a signal).
// The API server gets a context of its own, cancelled only once its start-up
// has finished: cancelling it while post-start hooks still run makes upstream
// code call klog.Fatal (exit 255) instead of shutting down cleanly.
func serve(stop context.Context, dir, kubeconfig string, port int, readyTimeout time.Duration, apiserverLog string, verbosity int, cl clusterOptions, extraArgs []string) int {
	start := time.Now()
	pkiDir := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		logf("%v", err)
		return 1
	}
	p, err := generatePKI(pkiDir)
	if err != nil {
		logf("generating certificates: %v", err)
		return 1
	}

	// etcd
	etcdClientPort, err := freePort()
	if err != nil {
		logf("%v", err)
		return 1
	}
	etcdPeerPort, err := freePort()
	if err != nil {
		logf("%v", err)
		return 1
	}
	etcd, err := startEtcd(stop, dir, etcdClientPort, etcdPeerPort)
	if err != nil {
		if stop.Err() != nil {
			logf("stopped while etcd was starting")
			return 0
		}
		logf("starting etcd: %v", err)
		return 1
	}
	defer func() {
		etcd.Close()
		logf("etcd stopped")
	}()
	etcdURL := "http://" + net.JoinHostPort(loopback, strconv.Itoa(etcdClientPort))
	logf("etcd ready at %s after %s", etcdURL, time.Since(start).Round(time.Millisecond))

	// kube-apiserver
	if port == 0 {
		if port, err = freePort(); err != nil {
			logf("%v", err)
			return 1
		}
	}
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--cert-dir=" + pkiDir,
		"--tls-cert-file=" + p.servingCert,
		"--tls-private-key-file=" + p.servingKey,
		"--client-ca-file=" + p.caCert,
		"--secure-port=" + strconv.Itoa(port),
		"--bind-address=" + loopback,
		"--advertise-address=" + loopback,
		// The default "lease" reconciler would try to publish 127.0.0.1 as the
		// endpoint of the "kubernetes" Service, which validation rejects (loopback)
		// every 10 s; nothing in a test env can use that endpoint anyway.
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=" + serviceCIDR,
		"--allow-privileged=true",
		"--disable-admission-plugins=" + disabledAdmission(cl.enabled),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.saPub,
		"--service-account-signing-key-file=" + p.saKey,
		"--v=" + strconv.Itoa(verbosity),
	}
	args = append(args, extraArgs...)

	apiCtx, apiCancel := context.WithCancel(context.Background())
	defer apiCancel()
	apiserverDone := make(chan error, 1)
	if err := startAPIServer(apiCtx, args, apiserverLog, apiserverDone); err != nil {
		logf("kube-apiserver: %v", err)
		return 1
	}
	// From here on the API server runs: shut it down before etcd is stopped
	// (deferred above; defers run last-in first-out).
	apiserverRunning := true
	defer func() {
		if !apiserverRunning {
			return
		}
		apiCancel()
		select {
		case err := <-apiserverDone:
			if err != nil {
				logf("kube-apiserver exited with error during shutdown: %v", err)
			} else {
				logf("kube-apiserver stopped")
			}
		case <-time.After(shutdownTimeout):
			logf("kube-apiserver did not stop within %s; stopping etcd anyway", shutdownTimeout)
		}
	}()

	server := "https://" + net.JoinHostPort(loopback, strconv.Itoa(port))
	if err := waitReady(stop, server, p, readyTimeout, apiserverDone, etcd.Err()); err != nil {
		var exited apiserverExited
		if errors.As(err, &exited) {
			apiserverRunning = false
		}
		logf("%v (kube-apiserver log: %s)", err, apiserverLog)
		return 1
	}
	if stop.Err() != nil {
		logf("start-up finished after the stop request; not reporting READY")
		return 0
	}
	if err := writeKubeconfig(kubeconfig, server, p); err != nil {
		logf("writing kubeconfig: %v", err)
		return 1
	}
	logf("kube-apiserver ready at %s after %s", server, time.Since(start).Round(time.Millisecond))

	// The cluster's components stop first (deferred last), while the API
	// server still answers: the task runner deletes the pods it finished.
	clusterCtx, clusterCancel := context.WithCancel(context.Background())
	clusterDone := make(chan error, 4)
	var runner *taskRunner
	defer func() {
		clusterCancel()
		if runner != nil {
			runner.wait()
		}
	}()
	if cl.enabled {
		r, err := startCluster(clusterCtx, dir, kubeconfig, cl, readyTimeout, clusterDone)
		runner = r
		if err != nil {
			logf("cluster: %v", err)
			return 1
		}
		logf("cluster ready (node %s Ready, controllers and scheduler running) after %s", nodeName, time.Since(start).Round(time.Millisecond))
		if stop.Err() != nil {
			return 0
		}
	}
	fmt.Fprintf(os.Stdout, "READY %s\n", kubeconfig)

	select {
	case err := <-clusterDone:
		logf("a cluster component exited unexpectedly: %v", err)
		return 1
	case <-stop.Done():
		return 0 // deferred: stop kube-apiserver, then etcd
	case err := <-apiserverDone:
		apiserverRunning = false
		logf("kube-apiserver exited unexpectedly: %v", err)
		return 1
	case err := <-etcd.Err():
		logf("etcd failed: %v", err)
		return 1
	}
}

// disabledAdmission: ServiceAccount always (no token controller). With
// --cluster also TaintNodesByCondition, which taints every new Node
// not-ready:NoSchedule until the node lifecycle controller sees it Ready; that
// controller is not run (see clusterControllers), so the taint would stay.
func disabledAdmission(cluster bool) string {
	if cluster {
		return "ServiceAccount,TaintNodesByCondition"
	}
	return "ServiceAccount"
}

// startAPIServer does what kube-apiserver's cobra command does
// (app.NewAPIServerCommand), but with our context instead of the command's
// own signal handler, so that we control the shutdown order.
func startAPIServer(ctx context.Context, args []string, logPath string, done chan<- error) error {
	s := options.NewServerRunOptions()
	featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)

	namedFlagSets := s.Flags()
	s.Flagz = flagz.NamedFlagSetsReader{FlagSets: namedFlagSets}
	globalflag.AddGlobalFlags(namedFlagSets.FlagSet("global"), "kube-apiserver", logs.SkipLoggingConfigurationFlags())
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range namedFlagSets.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	// kube-apiserver loopback clients should not log self-issued warnings.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	// Send the API server's (and client-go's, grpc's) klog output to its own
	// file, keeping our stdout for the READY line and stderr short.
	var logOut io.Writer = os.Stderr
	if logPath != "-" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		logOut = f
		klog.LogToStderr(false)
		klog.SetOutput(f)
	}
	if err := logsapi.ValidateAndApplyWithOptions(s.Logs, &logsapi.LoggingOptions{ErrorStream: logOut, InfoStream: logOut}, featureGate); err != nil {
		return err
	}
	cliflag.PrintFlags(fs)

	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	featureGate.(featuregate.MutableFeatureGate).AddMetrics()
	s.GenericServerRunOptions.ComponentGlobalsRegistry.AddMetrics()

	go func() { done <- app.Run(ctx, completed) }()
	return nil
}

func startEtcd(ctx context.Context, dir string, clientPort, peerPort int) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "kube-testenv"
	cfg.Dir = filepath.Join(dir, "etcd")
	clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort(loopback, strconv.Itoa(clientPort))}
	peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort(loopback, strconv.Itoa(peerPort))}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.ListenMetricsUrls = nil
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	// Only log requests slower than this (zero, the embed default, logs every
	// request as "expensive").
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	// Throwaway test data: durability is not needed, speed is.
	cfg.UnsafeNoFsync = true

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	case <-time.After(etcdStartTimeout):
		e.Close()
		return nil, fmt.Errorf("etcd not ready within %s", etcdStartTimeout)
	}
}

type apiserverExited struct{ err error }

func (e apiserverExited) Error() string {
	return fmt.Sprintf("kube-apiserver exited before becoming ready: %v", e.err)
}

// waitReady polls /readyz. A stop request does not interrupt it (see serve);
// the wait is bounded by timeout.
func waitReady(stop context.Context, server string, p *pki, timeout time.Duration, apiserverDone <-chan error, etcdErr <-chan error) error {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			Proxy: nil, // never go through a proxy for 127.0.0.1
			TLSClientConfig: &tls.Config{
				RootCAs:      pool,
				Certificates: []tls.Certificate{p.admin},
				ServerName:   loopback,
			},
		},
	}
	defer client.CloseIdleConnections()
	deadline := time.After(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	stopNotified := stop.Done()
	for {
		req, _ := http.NewRequest(http.MethodGet, server+"/readyz", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-stopNotified:
			logf("will stop as soon as start-up has finished")
			stopNotified = nil
		case err := <-apiserverDone:
			return apiserverExited{err}
		case err := <-etcdErr:
			return fmt.Errorf("etcd failed: %v", err)
		case <-deadline:
			return fmt.Errorf("/readyz not OK within %s (last: %s)", timeout, last)
		case <-tick.C:
		}
	}
}

// --- certificates ---------------------------------------------------------

type pki struct {
	ca                      *x509.Certificate
	caPEM                   []byte
	admin                   tls.Certificate
	adminCertPEM, adminKey  []byte
	caCert                  string
	servingCert, servingKey string
	saKey, saPub            string
}

func generatePKI(dir string) (*pki, error) {
	now := time.Now()
	notBefore, notAfter := now.Add(-time.Hour), now.Add(365*24*time.Hour)

	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kube-testenv-ca"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	issue := func(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, nil, err
		}
		tmpl.SerialNumber = serial()
		tmpl.NotBefore, tmpl.NotAfter = notBefore, notAfter
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		tmpl.BasicConstraintsValid = true
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		return pemEncode("CERTIFICATE", der), pemEncode("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)), nil
	}

	servingCert, servingKey, err := issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP(loopback), net.ParseIP(firstServiceIP)},
	})
	if err != nil {
		return nil, err
	}
	adminCert, adminKey, err := issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	admin, err := tls.X509KeyPair(adminCert, adminKey)
	if err != nil {
		return nil, err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}

	p := &pki{
		ca:           ca,
		caPEM:        pemEncode("CERTIFICATE", caDER),
		admin:        admin,
		adminCertPEM: adminCert,
		adminKey:     adminKey,
		caCert:       filepath.Join(dir, "ca.crt"),
		servingCert:  filepath.Join(dir, "apiserver.crt"),
		servingKey:   filepath.Join(dir, "apiserver.key"),
		saKey:        filepath.Join(dir, "sa.key"),
		saPub:        filepath.Join(dir, "sa.pub"),
	}
	files := []struct {
		path string
		data []byte
	}{
		{p.caCert, p.caPEM},
		{filepath.Join(dir, "ca.key"), pemEncode("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(caKey))},
		{p.servingCert, servingCert},
		{p.servingKey, servingKey},
		{filepath.Join(dir, "admin.crt"), adminCert},
		{filepath.Join(dir, "admin.key"), adminKey},
		{p.saKey, pemEncode("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey))},
		{p.saPub, pemEncode("PUBLIC KEY", saPubDER)},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// --- helpers --------------------------------------------------------------

// freePort asks the kernel for a free port on 127.0.0.1. There is a small
// window before the caller binds it, which is acceptable for a test harness.
func freePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func writeKubeconfig(path, server string, p *pki) error {
	b64 := base64.StdEncoding.EncodeToString
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kube-testenv
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: kube-testenv
  context:
    cluster: kube-testenv
    user: admin
    namespace: default
current-context: kube-testenv
preferences: {}
`, server, b64(p.caPEM), b64(p.adminCertPEM), b64(p.adminKey))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	// Write atomically so that a watcher never sees a half-written file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
