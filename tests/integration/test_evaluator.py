"""klt-evaluate against a real Prometheus (Debian's ``prometheus`` package, started here).

The data is deterministic: ``promtool tsdb create-blocks-from openmetrics`` backfills one sample
per minute for the last 30 minutes (M0 = the minute the module starts), so instant and range
queries made in the next few minutes see known values whatever second they run at:

- ``klt_cpu_free_cores{node="a"}``: 3.5 throughout (instant value 3.5).
- ``klt_queue_depth``: 20 up to M0-11, 3 from M0-10 to M0-6, 9 at M0-5, 2 from M0-4 to M0. A
  10m range ending now (within 4 minutes of M0) with a 1m step sees 3, 9 and 2 but never 20:
  max 9, min 2; without a step Keptn takes the first point (now-10m): 3.
- ``klt_replicas{i="1"|"2"}``: two series (Keptn: "too many values").

``klt_rollout_ready`` comes from a scrape target served by this test (scrape interval 1s), so
the test can flip it while the evaluator retries. A second Prometheus with a
``--web.config.file`` checks basic auth from ``secretDir``.

Prometheus is installed by scripts/test.sh (apt-get); without the binaries these tests skip
with the reason.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import pathlib
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import REPO, child_env

FIXTURES = REPO / "tests" / "fixtures" / "evaluator"
PASSWORD = "klt-test-s3cret-7f3a"  # tests/fixtures/evaluator/web-config.yml

pytestmark = pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("promtool")),
    reason="prometheus/promtool not on PATH (scripts/test.sh installs Debian's prometheus with apt-get as root)",
)


# ---------------------------------------------------------------------------------------------
# The evaluator binary


def evaluator_binary() -> pathlib.Path:
    override = os.environ.get("KLT_EVALUATE_BIN")
    if override:
        return pathlib.Path(override).resolve()
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    path = target / "debug" / "klt-evaluate"
    sources = [REPO / "Cargo.lock", *(REPO / "evaluator").rglob("*")]
    newest = max(f.stat().st_mtime for f in sources if f.is_file())
    if not path.is_file() or path.stat().st_mtime < newest:
        built = subprocess.run(
            ["cargo", "build", "--locked", "--quiet", "-p", "klt-evaluate"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if built.returncode != 0:
            pytest.fail(f"cargo build -p klt-evaluate failed:\n{built.stderr}", pytrace=False)
    return path


@pytest.fixture(scope="module")
def evaluator() -> pathlib.Path:
    return evaluator_binary()


# ---------------------------------------------------------------------------------------------
# Prometheus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openmetrics(m0: int) -> str:
    """One sample per minute, M0-30 .. M0 (M0 in epoch seconds, a whole minute)."""
    minutes = range(-30, 1)

    def depth(k: int) -> float:
        return 20 if k <= -11 else 3 if k <= -6 else 9 if k == -5 else 2

    lines = ["# TYPE klt_cpu_free_cores gauge"]
    lines += [f'klt_cpu_free_cores{{node="a"}} 3.5 {m0 + 60 * k}' for k in minutes]
    lines += ["# TYPE klt_queue_depth gauge"]
    lines += [f"klt_queue_depth {depth(k)} {m0 + 60 * k}" for k in minutes]
    lines += ["# TYPE klt_replicas gauge"]
    for i in ("1", "2"):
        lines += [f'klt_replicas{{i="{i}"}} {i} {m0 + 60 * k}' for k in minutes]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class ScrapeTarget(http.server.BaseHTTPRequestHandler):
    """/metrics with klt_rollout_ready = the class attribute `ready`."""

    ready = 0

    def do_GET(self):
        body = f"# TYPE klt_rollout_ready gauge\nklt_rollout_ready {type(self).ready}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def get_json(url: str, auth: tuple[str, str] | None = None):
    req = urllib.request.Request(url)
    if auth:
        import base64

        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def start_prometheus(work: pathlib.Path, config: str, extra: list[str] = ()) -> tuple[subprocess.Popen, str]:
    port = free_port()
    (work / "prometheus.yml").write_text(config)
    log = open(work / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited {proc.returncode}:\n{(work / 'prometheus.log').read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=2).read()
            return proc, url
        except urllib.error.HTTPError as e:
            if e.code == 401:  # basic auth on: up and answering
                return proc, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"prometheus not ready in 60s:\n{(work / 'prometheus.log').read_text()[-3000:]}")
        time.sleep(0.3)


def stop(proc: subprocess.Popen):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def backfilled_prometheus(work: pathlib.Path):
    """A Prometheus with the backfilled data (M0 = now) and the scrape target (klt_rollout_ready)."""
    m0 = int(time.time()) // 60 * 60
    (work / "data.om").write_text(openmetrics(m0))
    made = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(work / "data.om"), str(work / "data")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ScrapeTarget)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: rollout
    static_configs:
      - targets: ["127.0.0.1:{server.server_address[1]}"]
"""
    proc, url = start_prometheus(work, config)
    try:
        # The backfilled blocks are loaded and the target scraped once.
        deadline = time.monotonic() + 60
        while True:
            have = get_json(f"{url}/api/v1/query?query=count(klt_queue_depth)%2Bcount(klt_rollout_ready)")
            if have["data"]["result"]:
                break
            assert time.monotonic() < deadline, f"no data in prometheus: {have}"
            time.sleep(0.5)
        yield url
    finally:
        stop(proc)
        server.shutdown()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory, binary, evaluator):
    """The module's Prometheus. The data is known for about 4 minutes after it starts, so both
    binaries are built first; tests that take long (the image build) start their own, after
    the slow part."""
    with backfilled_prometheus(tmp_path_factory.mktemp("prometheus")) as url:
        yield url


@pytest.fixture(scope="module")
def prometheus_with_auth(tmp_path_factory):
    work = tmp_path_factory.mktemp("prometheus-auth")
    proc, url = start_prometheus(work, "global: {}\n", [f"--web.config.file={FIXTURES / 'web-config.yml'}"])
    try:
        yield url
    finally:
        stop(proc)


# ---------------------------------------------------------------------------------------------
# Running the evaluator


def evaluation(objectives, retries=1, interval="0s", name="pre-check") -> str:
    return json.dumps(
        {"name": name, "namespace": "shop", "retries": retries, "retryInterval": interval, "objectives": objectives},
        separators=(",", ":"),
    )


def objective(name, query, target, url, range_=None, ptype="prometheus", secret_dir=None) -> dict:
    o = {"name": name, "query": query}
    if range_:
        o["range"] = range_
    o["evaluationTarget"] = target
    o["provider"] = {"name": "prom", "type": ptype, "targetServer": url, "insecureSkipTlsVerify": False}
    if secret_dir:
        o["provider"]["secretDir"] = str(secret_dir)
        o["provider"]["secretKey"] = "creds"
    return o


def run(evaluator, spec: str, tmp_path, *args, timeout=120):
    log = tmp_path / "termination-log"
    proc = subprocess.run(
        [str(evaluator), *args],
        env=child_env({"KLT_EVALUATION": spec, "KLT_TERMINATION_LOG": str(log)}),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr, (log.read_text() if log.exists() else None)


# ---------------------------------------------------------------------------------------------
# Tests


def test_passing_and_failing_instant_objectives(evaluator, prometheus, tmp_path):
    spec = evaluation(
        [
            objective("cpu-free", 'klt_cpu_free_cores{node="a"}', ">2", prometheus),
            objective("cpu-free-4", 'klt_cpu_free_cores{node="a"}', ">4", prometheus),
            objective("cpu-sum", "sum(klt_cpu_free_cores) * 2", "<7.5", prometheus),
        ],
        retries=2,
        interval="100ms",
    )
    code, out, err, log = run(evaluator, spec, tmp_path)
    assert out.splitlines() == [
        "attempt 1/2: cpu-free = 3.5, target >2: pass",
        "attempt 1/2: cpu-free-4 = 3.5, target >4: fail",
        "attempt 1/2: cpu-sum = 7, target <7.5: pass",
        "attempt 2/2: cpu-free-4 = 3.5, target >4: fail",
    ], err
    summary = "evaluation pre-check failed: objective cpu-free-4 value 3.5 does not meet >4 (2 of 2 attempts)"
    assert (code, err.splitlines()[-1], log) == (1, summary, summary + "\n")


def test_all_pass(evaluator, prometheus, tmp_path):
    spec = evaluation([objective("cpu-free", 'klt_cpu_free_cores{node="a"}', ">2", prometheus)], retries=3)
    code, out, err, log = run(evaluator, spec, tmp_path)
    assert (code, err, log) == (0, "", None)
    assert out.splitlines() == [
        "attempt 1/3: cpu-free = 3.5, target >2: pass",
        "evaluation pre-check passed: 1 of 1 objective met (attempt 1 of 3)",
    ]


@pytest.mark.parametrize("ptype", ["thanos", "Cortex"])
def test_thanos_and_cortex_speak_the_same_api(evaluator, prometheus, tmp_path, ptype):
    spec = evaluation([objective("cpu-free", "klt_cpu_free_cores", ">2", prometheus, ptype=ptype)])
    code, out, err, _ = run(evaluator, spec, tmp_path)
    assert (code, out.splitlines()[0]) == (0, "attempt 1/1: cpu-free = 3.5, target >2: pass"), err


def test_range_queries_with_and_without_aggregation(evaluator, prometheus, tmp_path):
    ten = {"interval": "10m"}
    spec = evaluation(
        [
            objective("depth-max", "klt_queue_depth", ">8", prometheus, {**ten, "step": "1m", "aggregation": "max"}),
            objective("depth-min", "klt_queue_depth", "<3", prometheus, {**ten, "step": "1m", "aggregation": "min", "storedResults": 3}),
            objective("depth-10m-ago", "klt_queue_depth", "<4", prometheus, ten),
            objective("depth-now", "klt_queue_depth", "<2.5", prometheus),
            # A 40m window reaches the old 20s.
            objective("depth-max-40m", "klt_queue_depth", "<10", prometheus, {"interval": "40m", "step": "1m", "aggregation": "max"}),
        ]
    )
    code, out, err, _ = run(evaluator, spec, tmp_path)
    assert out.splitlines() == [
        "attempt 1/1: depth-max = 9, target >8: pass",
        "attempt 1/1: depth-min = 2, target <3: pass",
        "attempt 1/1: depth-10m-ago = 3, target <4: pass",
        "attempt 1/1: depth-now = 2, target <2.5: pass",
        "attempt 1/1: depth-max-40m = 20, target <10: fail",
    ], err
    assert code == 1


def test_query_errors_are_failures_with_keptns_reason(evaluator, prometheus, tmp_path):
    spec = evaluation(
        [
            objective("two", "klt_replicas", ">0", prometheus),
            objective("none", "klt_no_such_metric", ">0", prometheus),
            objective("bad", "sum(", ">0", prometheus),
            objective("scalar", "time()", ">0", prometheus),
        ]
    )
    code, out, err, log = run(evaluator, spec, tmp_path)
    where = f"provider prom ({prometheus})"
    lines = out.splitlines()
    assert lines[0] == f"attempt 1/1: two: no value from {where}: too many values in query result (2 series; the query must return exactly one), target >0: fail"
    assert lines[1] == f"attempt 1/1: none: no value from {where}: no values in query result (no series matched), target >0: fail"
    assert lines[2].startswith(f"attempt 1/1: bad: no value from {where}: bad_data: ") and "parse error" in lines[2]
    assert lines[3].startswith(f"attempt 1/1: scalar: no value from {where}: could not cast result: the query returned a scalar")
    assert code == 1 and log.startswith("evaluation pre-check failed: objective two has no value")


def test_fails_twice_then_passes(evaluator, prometheus, tmp_path):
    """The value really changes in Prometheus, after the evaluator has reported two failures."""
    ScrapeTarget.ready = 0
    spec = evaluation([objective("ready", "klt_rollout_ready", ">0", prometheus)], retries=10, interval="2s")
    proc = subprocess.Popen(
        [str(evaluator)],
        env=child_env({"KLT_EVALUATION": spec, "KLT_TERMINATION_LOG": str(tmp_path / "log")}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = [proc.stdout.readline().rstrip("\n") for _ in range(2)]
        ScrapeTarget.ready = 1  # scraped within a second; the next attempt is 2s later
        rest, err = proc.communicate(timeout=60)
    finally:
        ScrapeTarget.ready = 0
        if proc.poll() is None:
            proc.kill()
    assert seen == ["attempt 1/10: ready = 0, target >0: fail", "attempt 2/10: ready = 0, target >0: fail"], err
    lines = rest.splitlines()
    # Normally attempt 3; a slow scrape may cost one more attempt, never a pass before the flip.
    assert lines[-2].endswith(": ready = 1, target >0: pass") and lines[-2].startswith(("attempt 3/10", "attempt 4/10")), rest
    assert all(l.endswith("= 0, target >0: fail") for l in lines[:-2]), rest
    n = lines[-2].split("/")[0].split()[-1]
    assert lines[-1] == f"evaluation pre-check passed: 1 of 1 objective met (attempt {n} of 10)"
    assert proc.returncode == 0 and err == ""


def test_provider_down_fails_after_the_retries(evaluator, tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    spec = evaluation([objective("cpu-free", "klt_cpu_free_cores", ">2", "http://prometheus.invalid:9090")], retries=3, interval="200ms")
    started = time.monotonic()
    code, out, err, log = run(evaluator, spec, tmp_path, "--provider-url", down)
    elapsed = time.monotonic() - started
    lines = out.splitlines()
    assert len(lines) == 3 and [l.split(":")[0] for l in lines] == ["attempt 1/3", "attempt 2/3", "attempt 3/3"], out
    assert all(f"cpu-free: no value from provider prom ({down}): unreachable: " in l for l in lines), out
    summary = err.splitlines()[-1]
    assert summary.startswith(f"evaluation pre-check failed: objective cpu-free has no value from provider prom ({down}): unreachable: ")
    assert summary.endswith("(3 of 3 attempts)") and log == summary + "\n"
    assert code == 1 and elapsed >= 0.4  # two retry intervals slept


@pytest.mark.parametrize(
    "change, message",
    [
        ({"type": "elastic"}, 'provider prom has type "elastic", a Keptn provider type klt-evaluate does not implement (implemented: prometheus, thanos, cortex, datadog, dynatrace)'),
        ({"type": "dynatrace"}, "provider prom has type dynatrace but no secretKeyRef with a key (Keptn reads the API token from that key)"),
        ({"type": "dql"}, 'provider prom has type "dql", a Keptn provider type klt-evaluate does not implement'),
        ({"type": "datadog"}, "provider prom has type datadog but no secretKeyRef (Keptn reads the keys DD_CLIENT_API_KEY and DD_CLIENT_APP_KEY from it)"),
        ({"type": "graphite"}, 'provider prom has type "graphite", not a Keptn provider type'),
        ({"evaluationTarget": "<=0.5"}, 'evaluationTarget "<=0.5": the operator must be `>` or `<`'),
    ],
)
def test_configuration_errors_exit_2_without_an_attempt(evaluator, tmp_path, change, message):
    # A listening server that must never be asked.
    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            asked.append(self.path)
            self.send_response(500)
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        o = objective("cpu-free", "up", ">1", f"http://127.0.0.1:{server.server_address[1]}")
        if "type" in change:
            o["provider"]["type"] = change["type"]
        else:
            o.update(change)
        code, out, err, log = run(evaluator, evaluation([o], retries=3, interval="1s"), tmp_path)
    finally:
        server.shutdown()
    assert (code, out, asked) == (2, "", [])
    assert err.splitlines()[-1].startswith("evaluation configuration error: KLT_EVALUATION: evaluation pre-check: objectives[0] (cpu-free): ")
    assert message in err.splitlines()[-1] and log == err.splitlines()[-1] + "\n"


def test_bad_json_is_exit_2(evaluator, tmp_path):
    code, out, err, log = run(evaluator, '{"name": "x",', tmp_path)
    assert (code, out) == (2, "")
    assert err.startswith("evaluation configuration error: KLT_EVALUATION: not a valid evaluation: EOF while parsing")


def secret_dir(tmp_path, user: str | None, password: str | None) -> pathlib.Path:
    d = tmp_path / "providers" / "prom"
    d.mkdir(parents=True)
    if user is not None:
        (d / "user").write_text(user)
    if password is not None:
        (d / "password").write_text(password)
    return d


def test_secret_dir_credentials_are_sent_as_basic_auth_and_never_printed(evaluator, prometheus_with_auth, tmp_path):
    d = secret_dir(tmp_path, "klt", PASSWORD)
    spec = evaluation([objective("one", "vector(1)", ">0", prometheus_with_auth, secret_dir=d)])
    code, out, err, _ = run(evaluator, spec, tmp_path)
    assert (code, out.splitlines()[0]) == (0, "attempt 1/1: one = 1, target >0: pass"), err
    assert PASSWORD not in out + err


def test_wrong_or_missing_credentials(evaluator, prometheus_with_auth, tmp_path):
    wrong = secret_dir(tmp_path / "wrong", "klt", PASSWORD + "x")
    code, out, err, log = run(evaluator, evaluation([objective("one", "vector(1)", ">0", prometheus_with_auth, secret_dir=wrong)]), tmp_path)
    assert code == 1 and "HTTP 401 (client error)" in out and PASSWORD not in out + err + log
    # Without any credentials Prometheus refuses too.
    code, out, err, _ = run(evaluator, evaluation([objective("one", "vector(1)", ">0", prometheus_with_auth)]), tmp_path)
    assert code == 1 and "HTTP 401 (client error)" in out
    # A Secret without the password key: Keptn's provider needs both keys; exit 2, no attempt.
    half = secret_dir(tmp_path / "half", "klt", None)
    code, out, err, log = run(evaluator, evaluation([objective("one", "vector(1)", ">0", prometheus_with_auth, secret_dir=half)]), tmp_path)
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == (
        f"evaluation pre-check configuration error: provider prom: cannot read secret key \"password\" at {half}/password: "
        'No such file or directory (os error 2) (Keptn\'s prometheus provider needs keys "user" and "password" in the secretKeyRef Secret)'
    )


# ---------------------------------------------------------------------------------------------
# klt-render run --pod: an evaluation Job's pod, as kube-testenv's kubelet stand-in hands it over


def evaluation_pod(spec: str, termination_path: str | None = None) -> dict:
    container = {
        "name": "evaluator",
        "image": "ghcr.io/klt-render/klt-evaluate:0.1.0",
        "env": [{"name": "KLT_EVALUATION", "value": spec}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "provider-prom", "mountPath": "/var/run/klt-evaluate/providers/prom", "readOnly": True}],
    }
    if termination_path:
        container["terminationMessagePath"] = termination_path
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pre-eval-pre-check-1a2b3c-xyz", "namespace": "shop"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [{"name": "provider-prom", "secret": {"secretName": "prom-creds"}}],
        },
    }


def run_pod(binary, pod: dict, root: pathlib.Path, tmp_path, *extra, env=None):
    pod_file = tmp_path / "pod.json"
    pod_file.write_text(json.dumps(pod))
    proc = subprocess.run(
        [str(binary), "run", "--pod", str(pod_file), "--root", str(root), *extra],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def pod_root(tmp_path, password: str) -> pathlib.Path:
    root = tmp_path / "root"
    secrets = root / "var/run/klt-evaluate/providers/prom"
    secrets.mkdir(parents=True)
    (secrets / "user").write_text("klt")
    (secrets / "password").write_text(password)
    return root


def pod_spec(url: str, target: str = ">0") -> str:
    o = objective("one", "vector(1)", target, url, secret_dir="/var/run/klt-evaluate/providers/prom")
    return evaluation([o], retries=2, interval="100ms")


def test_run_pod_executes_the_evaluator_with_the_pods_secret_volume(binary, evaluator, prometheus_with_auth, tmp_path):
    root = pod_root(tmp_path, PASSWORD)
    # The evaluator is found next to klt-render (both in target/debug).
    assert binary.parent == evaluator.parent
    code, out, err = run_pod(binary, evaluation_pod(pod_spec(prometheus_with_auth)), root, tmp_path)
    assert (code, out.splitlines()) == (0, [
        "attempt 1/2: one = 1, target >0: pass",
        "evaluation pre-check passed: 1 of 1 objective met (attempt 1 of 2)",
    ]), err
    assert "klt-render run: pod shop/pre-eval-pre-check-1a2b3c-xyz container evaluator (evaluation, " in err
    assert PASSWORD not in out + err
    assert not (root / "dev" / "termination-log").exists()


def test_run_pod_passes_the_exit_code_and_writes_the_termination_message(binary, evaluator, prometheus_with_auth, tmp_path):
    root = pod_root(tmp_path, PASSWORD)
    pod = evaluation_pod(pod_spec(prometheus_with_auth, ">1"), termination_path="/tmp/msg")
    code, out, err = run_pod(binary, pod, root, tmp_path, "--evaluator", str(evaluator))
    summary = "evaluation pre-check failed: objective one value 1 does not meet >1 (2 of 2 attempts)"
    assert (code, err.splitlines()[-1]) == (1, summary), err
    assert (root / "tmp" / "msg").read_text() == summary + "\n"
    # Wrong password in the volume: 401 from the real server, still no secret in the output.
    root2 = pod_root(tmp_path / "2", PASSWORD + "-wrong")
    code, out, err = run_pod(binary, evaluation_pod(pod_spec(prometheus_with_auth)), root2, tmp_path)
    assert code == 1 and "HTTP 401" in out and PASSWORD not in out + err
    assert (root2 / "dev" / "termination-log").read_text().startswith("evaluation pre-check failed: objective one has no value")


def test_run_pod_configuration_error_and_missing_evaluator(binary, evaluator, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    spec = evaluation([objective("one", "up", ">0", "http://127.0.0.1:9", ptype="elastic")])
    code, out, err = run_pod(binary, evaluation_pod(spec), root, tmp_path, "--evaluator", str(evaluator))
    assert (code, out) == (2, "")
    assert 'provider prom has type "elastic", a Keptn provider type klt-evaluate does not implement' in err.splitlines()[-1]
    code, out, err = run_pod(binary, evaluation_pod(spec), root, tmp_path, env={"KLT_EVALUATE": str(tmp_path / "nope")})
    assert (code, out) == (2, "")
    assert err.strip() == f"klt-render run: error: --evaluator {tmp_path / 'nope'}: no such file"


# ---------------------------------------------------------------------------------------------
# klt-render run EVALUATION-DEFINITION: the rendered evaluation Job, run locally

APP = FIXTURES / "app"


def run_local(binary, *args):
    proc = subprocess.run(
        [str(binary), "run", *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_run_evaluation_definition_against_a_provider_url(binary, evaluator, prometheus):
    code, out, err = run_local(binary, "cpu-gate", str(APP), "--provider-url", prometheus)
    assert (code, out.splitlines()) == (0, [
        "attempt 1/2: cpu-free = 3.5, target >2: pass",
        "evaluation cpu-gate passed: 1 of 1 objective met (attempt 1 of 2)",
    ]), err
    assert err.startswith(f"klt-render run: evaluation Job pre-eval-cpu-gate-") and f" against {prometheus} (" in err
    code, out, err = run_local(binary, "queue-gate", str(APP), "--provider-url", prometheus, "--quiet")
    assert out.splitlines() == [
        "attempt 1/2: cpu-free = 3.5, target >2: pass",
        "attempt 1/2: queue-depth-max = 9, target <5: fail",
        "attempt 2/2: queue-depth-max = 9, target <5: fail",
    ], err
    assert (code, err) == (1, "evaluation queue-gate failed: objective queue-depth-max value 9 does not meet <5 (2 of 2 attempts)\n")


def test_run_evaluation_reads_the_provider_secret_from_the_input(binary, evaluator, prometheus_with_auth):
    code, out, err = run_local(binary, "auth-gate", str(APP), "--provider-url", prometheus_with_auth)
    assert (code, out.splitlines()[0]) == (0, "attempt 1/1: one = 1, target >0: pass"), err
    assert PASSWORD not in out + err
    code, out, err = run_local(binary, "auth-gate", str(APP), "--dry-run")
    assert code == 0 and PASSWORD not in out + err
    assert '"secretDir":"/var/run/klt-evaluate/providers/guarded","secretKey":"password"' in out
    assert out.splitlines()[-2:] == ["KLT_TERMINATION_LOG=/dev/termination-log", str(evaluator)]


def test_run_evaluation_errors(binary, evaluator):
    code, out, err = run_local(binary, "no-such-gate", str(APP), "--provider-url", "http://127.0.0.1:9")
    assert (code, out) == (2, "")
    assert err == f'klt-render run: error: --provider-url: no evaluation Job for "no-such-gate" in the render of {APP} (a KeptnEvaluationDefinition used by an app or workload)\n'
    code, out, err = run_local(binary, "cpu-gate", str(APP), "--phase", "post")
    assert (code, out) == (2, "")
    assert err.startswith("klt-render run: error: no evaluation Job of cpu-gate fits the options; there are: pre-eval-cpu-gate-")


# ---------------------------------------------------------------------------------------------
# https: verification on by default (the compiled-in webpki roots), off with insecureSkipTlsVerify


@pytest.fixture(scope="module")
def https_prometheus(prometheus, tmp_path_factory):
    """A TLS front (self-signed certificate for 127.0.0.1) forwarding to the real Prometheus."""
    import ssl

    if not shutil.which("openssl"):
        pytest.skip("openssl not on PATH (needed to make the test certificate)")
    work = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(work / "key.pem"), "-out", str(work / "cert.pem")],
        capture_output=True,
        check=True,
    )

    class Forward(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            req = urllib.request.Request(prometheus + self.path, data=body, method="POST")
            req.add_header("Content-Type", self.headers.get("Content-Type") or "application/x-www-form-urlencoded")
            with urllib.request.urlopen(req, timeout=10) as r:
                data, status = r.read(), r.status
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(work / "cert.pem", work / "key.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_https_verifies_certificates_unless_insecure_skip_tls_verify(evaluator, https_prometheus, tmp_path):
    o = objective("cpu-free", 'klt_cpu_free_cores{node="a"}', ">2", https_prometheus)
    code, out, err, _ = run(evaluator, evaluation([o]), tmp_path)
    assert code == 1 and "certificate" in out.lower(), out + err
    o["provider"]["insecureSkipTlsVerify"] = True
    code, out, err, _ = run(evaluator, evaluation([o]), tmp_path)
    assert (code, out.splitlines()[0]) == (0, "attempt 1/1: cpu-free = 3.5, target >2: pass"), err


# ---------------------------------------------------------------------------------------------
# datadog: Keptn's recorded answers (tests/fixtures/evaluator/datadog/) replayed by a local server


def replay_server(provider: str, seen: list, answer: list) -> http.server.ThreadingHTTPServer:
    """A started local server that answers every GET or POST with the recorded file
    tests/fixtures/evaluator/PROVIDER/`answer[0]` and status `answer[1]`, and appends
    (method, path, lower-cased headers) of each request to `seen`."""

    class Replay(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            body = (FIXTURES / provider / answer[0]).read_bytes()
            self.send_response(answer[1])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Replay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def datadog(tmp_path):
    """A server answering GET /api/v1/query with the recorded file `answer[0]` and status `answer[1]`."""
    seen = []
    answer = ["query-ok.json", 200]

    server = replay_server("datadog", seen, answer)
    keys = tmp_path / "dd"
    keys.mkdir()
    (keys / "DD_CLIENT_API_KEY").write_text("api-key-7c1e")
    (keys / "DD_CLIENT_APP_KEY").write_text("app-key-90fd")
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", keys, seen, answer
    finally:
        server.shutdown()


def test_datadog_query_as_keptn_sends_it(evaluator, datadog, tmp_path):
    import urllib.parse

    url, keys, seen, answer = datadog
    o = objective("idle", "system.cpu.idle{*}", ">80", url, ptype="datadog", secret_dir=keys)
    started = int(time.time())
    code, out, err, _ = run(evaluator, evaluation([o]), tmp_path)
    assert (code, out.splitlines()[0]) == (0, "attempt 1/1: idle = 89.116, target >80: pass"), err
    [(method, path, headers)] = seen
    parsed = urllib.parse.urlsplit(path)
    query = urllib.parse.parse_qs(parsed.query)
    assert (method, parsed.path, list(query)) == ("GET", "/api/v1/query", ["from", "to", "query"])
    assert query["query"] == ["system.cpu.idle{*}"]
    assert int(query["to"][0]) - int(query["from"][0]) == 300 and abs(int(query["to"][0]) - started) <= 5
    assert (headers.get("dd-api-key"), headers.get("dd-application-key")) == ("api-key-7c1e", "app-key-90fd")
    assert headers.get("accept") == "application/json"
    assert "api-key-7c1e" not in out + err and "app-key-90fd" not in out + err
    # A stepped range: every point through the aggregation, `interval` in milliseconds.
    seen.clear()
    o["range"] = {"interval": "1h", "step": "5m", "aggregation": "min"}
    code, out, err, _ = run(evaluator, evaluation([o]), tmp_path)
    assert (code, out.splitlines()[0]) == (1, "attempt 1/1: idle = 69.670943, target >80: fail"), err
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(seen[0][1]).query)
    assert list(query) == ["from", "to", "interval", "query"] and query["interval"] == ["300000"]
    assert int(query["to"][0]) - int(query["from"][0]) == 3600


@pytest.mark.parametrize(
    "file, status, reason",
    [
        ("query-error.json", 403, "HTTP 403: Token is missing required scope"),
        ("query-empty.json", 200, "no values in query result"),
        ("query-no-points.json", 200, "no metric points in query result"),
    ],
)
def test_datadog_answers_without_a_value(evaluator, datadog, tmp_path, file, status, reason):
    url, keys, seen, answer = datadog
    answer[:] = [file, status]
    o = objective("idle", "system.cpu.idle{*}", ">80", url, ptype="datadog", secret_dir=keys)
    code, out, err, _ = run(evaluator, evaluation([o], retries=2), tmp_path)
    assert code == 1 and len(seen) == 2
    assert out.splitlines()[0] == f"attempt 1/2: idle: no value from provider prom ({url}): {reason}, target >80: fail"



# ---------------------------------------------------------------------------------------------
# dynatrace (metrics API v2): Keptn's recorded answers replayed


@pytest.fixture
def dynatrace(tmp_path):
    seen = []
    answer = ["metrics-query-ok.json", 200]

    server = replay_server("dynatrace", seen, answer)
    token_dir = tmp_path / "dt"
    token_dir.mkdir()
    (token_dir / "apiToken").write_text("dt0c01.TESTTOKEN.s3cr3t\n")  # kubectl create secret --from-file keeps the newline
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", token_dir, seen, answer
    finally:
        server.shutdown()


def dynatrace_objective(url, token_dir, query, range_=None) -> dict:
    o = objective("host-units", query, ">40", url, range_, ptype="dynatrace", secret_dir=token_dir)
    o["provider"]["secretKey"] = "apiToken"
    return o


def test_dynatrace_query_as_keptn_sends_it(evaluator, dynatrace, tmp_path):
    url, token_dir, seen, answer = dynatrace
    o = dynatrace_objective(url, token_dir, "builtin:billing.ddu.metrics.total:splitBy()")
    code, out, err, _ = run(evaluator, evaluation([o]), tmp_path)
    assert (code, out.splitlines()[0]) == (0, "attempt 1/1: host-units = 50.000000, target >40: pass"), err
    [(method, path, headers)] = seen
    assert (method, path) == ("GET", "/api/v2/metrics/query?metricSelector=builtin%3Abilling.ddu.metrics.total%3AsplitBy%28%29")
    assert headers["authorization"] == "Api-Token dt0c01.TESTTOKEN.s3cr3t"
    assert "s3cr3t" not in out + err
    # The query may carry its own parameters (Keptn splits at & and =); a range adds from/resolution.
    seen.clear()
    o = dynatrace_objective(url + "/api", token_dir, "q&from=now-2h")
    run(evaluator, evaluation([o]), tmp_path)
    assert seen[0][1] == "/api/v2/metrics/query?metricSelector=q&from=now-2h"
    seen.clear()
    o = dynatrace_objective(url, token_dir, "q", {"interval": "2h", "step": "1m", "aggregation": "max"})
    code, out, _, _ = run(evaluator, evaluation([o]), tmp_path)
    assert seen[0][1] == "/api/v2/metrics/query?metricSelector=q&from=now-2h&resolution=1m"
    assert out.splitlines()[0] == "attempt 1/1: host-units = 50, target >40: pass"


def test_dynatrace_error_answer(evaluator, dynatrace, tmp_path):
    url, token_dir, seen, answer = dynatrace
    answer[:] = ["metrics-query-error.json", 403]
    code, out, err, log = run(evaluator, evaluation([dynatrace_objective(url, token_dir, "q")]), tmp_path)
    assert code == 1
    assert out.splitlines()[0] == (
        f"attempt 1/1: host-units: no value from provider prom ({url}): HTTP 403: provider api response: "
        "Token is missing required scope. Use one of: metrics.read (Read metrics), target >40: fail"
    )

# ---------------------------------------------------------------------------------------------
# The image (evaluator/Dockerfile), built offline with buildah from the static musl binary


MUSL = "x86_64-unknown-linux-musl"


def static_evaluator() -> pathlib.Path:
    """target/static/<musl>/release/klt-evaluate (cargo keeps it cached there)."""
    if os.uname().machine != "x86_64":
        pytest.skip(f"the image test builds for x86_64 only; this is {os.uname().machine}")
    have = subprocess.run(["rustup", "target", "list", "--installed"], capture_output=True, text=True, check=False)
    if MUSL not in have.stdout.split():
        added = subprocess.run(["rustup", "target", "add", MUSL], capture_output=True, text=True, check=False)
        if added.returncode != 0:
            pytest.skip(f"rustup target add {MUSL} failed: {added.stderr.strip()[-300:]}")
    if not shutil.which("musl-gcc"):
        ensure_apt("musl-tools", "musl-gcc")
    built = subprocess.run(
        ["nice", "cargo", "build", "--locked", "--quiet", "--release", "--target", MUSL, "-p", "klt-evaluate"],
        cwd=REPO,
        env=child_env({"CARGO_TARGET_DIR": str(REPO / "target" / "static"), "CARGO_PROFILE_RELEASE_STRIP": "symbols"}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return REPO / "target" / "static" / MUSL / "release" / "klt-evaluate"


def ensure_apt(package: str, command: str):
    if shutil.which(command):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"{command} is missing and this user cannot apt-get install {package}")
    env = child_env({"DEBIAN_FRONTEND": "noninteractive"})
    got = subprocess.run(["apt-get", "install", "-y", "-qq", package], env=env, capture_output=True, text=True, check=False)
    if got.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        got = subprocess.run(["apt-get", "install", "-y", "-qq", package], env=env, capture_output=True, text=True, check=False)
    if got.returncode != 0 or not shutil.which(command):
        pytest.skip(f"apt-get install {package} failed: {got.stderr.strip()[-300:]}")


def buildah(*args, check=True, **kw):
    proc = subprocess.run(["buildah", *args], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, **kw)
    if check:
        assert proc.returncode == 0, f"buildah {' '.join(args)}: {proc.stderr}"
    return proc


def strip_buildah_report(stderr: str, code: int) -> str:
    """buildah run appends its own lines about a non-zero exit of the command."""
    import re

    if not code:
        return stderr
    m = re.search(rf"(?:subprocess exited with status {code}\n)+Error: exit status {code}\n?\Z", stderr)
    return stderr[: m.start()] if m else stderr + "<buildah's exit report missing>\n"


def test_image_is_scratch_with_the_static_binary_and_evaluates_like_the_host(tmp_path):
    import hashlib
    import tarfile

    ensure_apt("buildah", "buildah")
    binary = static_evaluator()
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    assert "statically linked" in ldd.stdout + ldd.stderr or "not a dynamic executable" in ldd.stdout + ldd.stderr, ldd
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy2(binary, context / "klt-evaluate")
    tag = f"localhost/klt-evaluate:test-{os.getpid()}"
    bud = buildah("bud", "--isolation", "chroot", "--pull=never", "--target", "prebuilt",
                  "-f", str(REPO / "evaluator" / "Dockerfile"), "-t", tag, str(context), check=False)
    assert bud.returncode == 0, bud.stdout + bud.stderr
    assert "library/rust" not in bud.stdout + bud.stderr  # the build stage was skipped
    ctr = None
    stack = contextlib.ExitStack()
    try:
        config = json.loads(buildah("inspect", "--type", "image", tag).stdout)["OCIv1"]["config"]
        assert config["Entrypoint"] == ["/usr/local/bin/klt-evaluate"] and config.get("User") == "65532:65532", config
        assert not config.get("Cmd"), config
        buildah("push", "--quiet", tag, f"oci:{tmp_path / 'oci'}:image")
        blobs = tmp_path / "oci" / "blobs" / "sha256"
        index = json.loads((tmp_path / "oci" / "index.json").read_text())
        manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
        files = {}
        for layer in manifest["layers"]:
            with tarfile.open(blobs / layer["digest"].split(":")[1]) as tar:
                for m in tar.getmembers():
                    if m.isfile():
                        files["/" + m.name.lstrip("./")] = (m.mode & 0o7777, hashlib.sha256(tar.extractfile(m).read()).hexdigest())
        assert files == {"/usr/local/bin/klt-evaluate": (0o755, hashlib.sha256(binary.read_bytes()).hexdigest())}
        ctr = buildah("from", "--pull=never", tag).stdout.strip()
        version = buildah("run", "--isolation", "chroot", ctr, "--", "klt-evaluate", "--version").stdout
        assert version == subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout
        # One passing and one failing evaluation against the real Prometheus: image == host.
        # (A fresh one: the build above may have taken longer than the module's data lasts.)
        (tmp_path / "prometheus").mkdir()
        prometheus = stack.enter_context(backfilled_prometheus(tmp_path / "prometheus"))
        for target, want in ((">2", 0), (">4", 1)):
            spec = evaluation([objective("cpu-free", 'klt_cpu_free_cores{node="a"}', target, prometheus)])
            inside = buildah("run", "--isolation", "chroot", "--env", f"KLT_EVALUATION={spec}",
                             "--env", "KLT_TERMINATION_LOG=/dev/null", ctr, "--", "klt-evaluate", check=False)
            host = subprocess.run([str(binary)], env={"KLT_EVALUATION": spec, "KLT_TERMINATION_LOG": "/dev/null"},
                                  capture_output=True, text=True, check=False)
            assert (inside.returncode, inside.stdout, strip_buildah_report(inside.stderr, inside.returncode)) == (
                host.returncode, host.stdout, host.stderr), inside.stderr
            assert host.returncode == want and "cpu-free = 3.5" in host.stdout
        shell = buildah("run", "--isolation", "chroot", ctr, "--", "/bin/sh", "-c", "true", check=False)
        assert shell.returncode != 0
    finally:
        stack.close()
        if ctr:
            buildah("rm", ctr, check=False)
        buildah("rmi", tag, check=False)


def dockerfile_stages() -> dict[str, list[str]]:
    import re

    text = (REPO / "evaluator" / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    out, current = {}, None
    for line in (l.strip() for l in text.splitlines() if l.strip()):
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?$", line, re.IGNORECASE)
        if m:
            current = m.group(2)
            out[current] = [f"FROM {m.group(1)}"]
        elif current:
            out[current].append(re.sub(r"\s+", " ", line))
    return out


def test_dockerfile_prebuilt_and_image_stages_match():
    s = dockerfile_stages()
    assert list(s) == ["build", "prebuilt", "image"]
    strip = lambda lines: [l for l in lines if not l.startswith(("COPY", "ARG BINARY"))]
    assert strip(s["prebuilt"]) == strip(s["image"])
    assert s["image"][0] == "FROM scratch"
    assert "COPY --from=build --chmod=0755 /out/klt-evaluate /usr/local/bin/klt-evaluate" in s["image"]


def test_run_a_rendered_datadog_evaluation(binary, evaluator, datadog):
    url, keys, seen, answer = datadog
    code, out, err = run_local(binary, "idle-gate", str(APP), "--provider-url", url)
    assert (code, out.splitlines()[0]) == (0, "attempt 1/1: cpu-idle = 89.116, target >80: pass"), err
    [(method, path, headers)] = seen
    assert (headers.get("dd-api-key"), headers.get("dd-application-key")) == ("api-key-7c1e", "app-key-90fd")
    assert "api-key-7c1e" not in out + err


def test_run_a_rendered_dynatrace_evaluation(binary, evaluator, dynatrace):
    url, token_dir, seen, answer = dynatrace
    code, out, err = run_local(binary, "units-gate", str(APP), "--provider-url", url)
    assert (code, out.splitlines()[0]) == (0, "attempt 1/1: host-units = 50.000000, target >40: pass"), err
    [(method, path, headers)] = seen
    assert path == "/api/v2/metrics/query?metricSelector=builtin%3Abilling.ddu.metrics.total%3AsplitBy%28%29"
    assert headers["authorization"] == "Api-Token dt0c01.TESTTOKEN.s3cr3t"
    assert "s3cr3t" not in out + err
