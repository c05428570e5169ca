"""The --cluster environment of testenv/ (issue 10): a real kube-apiserver with the real
kube-controller-manager (Job, garbage-collector, Deployment, ReplicaSet controllers) and
kube-scheduler in one process, a kwok node for ordinary pods, and the task-pod runner that
plays the kubelet for pods of klt-render Jobs by running `klt-render run --pod`.

Everything is applied with kubectl as rendered by klt-render; the assertions read the Job
controller's own conditions and the runner's task log (--task-log), whose stdout files show
that the task code ran. The binary is built from Go modules on first use (cached in
.cache/testenv). Skipped only when that build is impossible here (testenv/build.sh exit 3).
"""

from __future__ import annotations

import http.server
import json
import os
import pathlib
import re
import subprocess
import threading
import time

import pytest
import yaml

from conftest import REPO, ensure_binary

TESTENV = REPO / "testenv"
CLUSTER_FIXTURES = REPO / "tests" / "fixtures" / "cluster"
IMPOSSIBLE = 3  # build.sh / run.sh: the Go build is impossible here
START_TIMEOUT_S = 45 * 60  # a cold build on a busy 2-core machine


def deno_dir() -> pathlib.Path:
    import deno  # the PyPI package (tests/requirements.txt), as test_run.py uses it

    return pathlib.Path(deno.find_deno_bin()).parent


class Cluster:
    def __init__(self, env: dict[str, str], task_log: pathlib.Path):
        self.kubeconfig = env["KUBECONFIG"]
        self.pid = env["KUBE_TESTENV_PID"]
        self.dir = pathlib.Path(env["KUBE_TESTENV_DIR"])
        self.task_log = task_log

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, *args],
            input=stdin, capture_output=True, text=True, timeout=120,
        )
        if check:
            assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
        return r

    def get(self, kind: str, name: str, ns: str) -> dict:
        return json.loads(self.kubectl("get", kind, name, "-n", ns, "-o", "json").stdout)

    def items(self, kind: str, ns: str, selector: str) -> list[dict]:
        return json.loads(self.kubectl("get", kind, "-n", ns, "-l", selector, "-o", "json").stdout)["items"]

    def events(self, job: str | None = None) -> list[dict]:
        if not self.task_log.exists():
            return []
        out = [json.loads(line) for line in self.task_log.read_text().splitlines() if line.strip()]
        return [e for e in out if job is None or e["job"] == job]

    def logs(self, diagnostics: str = "") -> str:
        tails = []
        for name in ("task-runner.log", "kwok.log"):
            p = self.dir / name
            if p.exists():
                tails.append(f"--- {name}\n" + "\n".join(p.read_text().splitlines()[-30:]))
        return diagnostics + "\n" + "\n".join(tails)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    binary = ensure_binary()
    task_log = tmp_path_factory.mktemp("cluster-env") / "tasks.jsonl"
    # The runner's klt-render finds deno (from PyPI) and python3 on this PATH.
    env = dict(os.environ, PATH=f"{deno_dir()}{os.pathsep}{os.environ.get('PATH', '')}")
    env = {k: v for k, v in env.items() if not k.startswith("KLT_")}
    from test_evaluator import evaluator_binary  # klt-evaluate, built when stale

    evaluate = evaluator_binary()
    started = subprocess.run(
        ["bash", str(TESTENV / "run.sh"), "--cluster", "--klt-render", str(binary), "--klt-evaluate", str(evaluate),
         "--task-log", str(task_log)],
        capture_output=True, text=True, timeout=START_TIMEOUT_S, env=env,
    )
    if started.returncode == IMPOSSIBLE:
        pytest.skip(started.stderr.strip().splitlines()[-1] if started.stderr.strip() else "build impossible")
    assert started.returncode == 0, started.stderr[-4000:]
    exports = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines() if line.startswith("export "))
    c = Cluster({k: v.strip("'\"") for k, v in exports.items()}, task_log)
    try:
        yield c
    finally:
        subprocess.run(["bash", str(TESTENV / "stop.sh"), c.pid], capture_output=True, timeout=180)


def wait_for(what: str, probe, timeout: float, cluster: Cluster):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout}s waiting for {what}" + cluster.logs())


def job_condition(job: dict) -> tuple[str, str] | None:
    """The Job controller's terminal condition (type, reason), if any."""
    for c in job.get("status", {}).get("conditions", []):
        if c["type"] in ("Complete", "Failed") and c["status"] == "True":
            return c["type"], c.get("reason", "")
    return None


def render(*args: str) -> list[dict]:
    r = subprocess.run([str(ensure_binary()), "render", *args], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if not k.startswith("KLT_")})
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def apply(cluster: Cluster, ns: str, docs: list[dict]):
    cluster.kubectl("create", "namespace", ns, check=False)
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump_all(docs))


def job_named(docs: list[dict], prefix: str) -> str:
    names = [d["metadata"]["name"] for d in docs if d["kind"] == "Job" and d["metadata"]["name"].startswith(prefix)]
    assert len(names) == 1, names
    return names[0]


class Hook(http.server.BaseHTTPRequestHandler):
    """Stands in for the Slack webhook that examples/checkout's deno task posts to."""

    bodies: list[dict] = []

    def do_POST(self):
        Hook.bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def webhook():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture(scope="module")
def checkout(cluster, webhook):
    """examples/checkout rendered for namespace checkout and applied, with the Secret its
    deno task reads (SECURE_DATA: the URL of the local webhook)."""
    docs = render("examples/checkout", "--namespace", "checkout")
    cluster.kubectl("create", "namespace", "checkout")
    cluster.kubectl("create", "secret", "generic", "slack-webhook", "-n", "checkout",
                    f"--from-literal=SECURE_DATA={webhook}")
    apply(cluster, "checkout", docs)
    return docs


def test_a_deno_task_job_runs_its_code_and_completes(cluster, checkout):
    job = job_named(checkout, "post-notify-release-")
    done = wait_for(f"Job {job} to finish", lambda: job_condition(cluster.get("job", job, "checkout")), 180, cluster)
    assert done == ("Complete", "CompletionsReached"), cluster.logs()
    # The code ran with the resolved env: DATA, KEPTN_CONTEXT and SECURE_DATA from the Secret.
    assert {"channel": "#deployments", "text": "checkout released (checkout 1.4.0, post)"} in Hook.bodies
    events = cluster.events(job)
    assert [e["event"] for e in events] == ["task-exec-start", "task-exec-end"], events
    assert events[-1]["exit"] == 0 and events[-1]["namespace"] == "checkout"


def test_a_python_task_job_runs_its_code_and_completes(cluster, checkout):
    job = job_named(checkout, "pre-db-migrate-")
    done = wait_for(f"Job {job} to finish", lambda: job_condition(cluster.get("job", job, "checkout")), 180, cluster)
    assert done == ("Complete", "CompletionsReached"), cluster.logs()
    end = [e for e in cluster.events(job) if e["event"] == "task-exec-end"]
    assert [e["exit"] for e in end] == [0]
    # The code came from the ConfigMap of the app (configMapRef), mounted by the runner.
    assert pathlib.Path(end[0]["stdout"]).read_text() == "migrating database checkout\n"


def test_a_container_task_succeeds_by_default(cluster, checkout):
    job = job_named(checkout, "pre-check-dependencies-")
    done = wait_for(f"Job {job} to finish", lambda: job_condition(cluster.get("job", job, "checkout")), 180, cluster)
    assert done == ("Complete", "CompletionsReached")
    out = pathlib.Path(cluster.events(job)[-1]["stdout"]).read_text()
    assert "container task curlimages/curl:8.11.1 is not run here; it exits 0" in out


def test_a_deployment_becomes_available(cluster, checkout):
    def available():
        d = cluster.get("deployment", "checkout-api", "checkout")
        ok = any(c["type"] == "Available" and c["status"] == "True" for c in d.get("status", {}).get("conditions", []))
        return ok and d["status"].get("readyReplicas") == 2 and d
    wait_for("Deployment checkout-api to be Available", available, 120, cluster)
    pods = cluster.items("pod", "checkout", "app.kubernetes.io/name=checkout-api")
    assert {p["spec"]["nodeName"] for p in pods} == {"kwok-node-0"}  # bound by kube-scheduler
    assert all(p["status"]["phase"] == "Running" for p in pods)
    # kwok's pods never reach the task runner.
    assert not [e for e in cluster.events() if e["pod"].startswith("checkout-api-")]


@pytest.fixture(scope="module")
def tasks(cluster):
    docs = render(str(CLUSTER_FIXTURES / "tasks"), "--namespace", "cluster-env")
    apply(cluster, "cluster-env", docs)
    return docs


def test_a_failing_task_fails_its_job_after_backoff_limit_plus_one_attempts(cluster, tasks):
    job = job_named(tasks, "fail-always-run-")
    assert cluster.get("job", job, "cluster-env")["spec"]["backoffLimit"] == 1
    done = wait_for(f"Job {job} to fail", lambda: job_condition(cluster.get("job", job, "cluster-env")), 120, cluster)
    assert done == ("Failed", "BackoffLimitExceeded"), cluster.logs()
    starts = [e for e in cluster.events(job) if e["event"] == "task-exec-start"]
    # restartPolicy OnFailure: one pod, its container restarted once (restartCount 1 reaches
    # backoffLimit 1, so the Job controller fails the Job and stops the second attempt).
    assert [e["attempt"] for e in starts] == [1, 2], cluster.events(job)
    assert len({e["pod"] for e in starts}) == 1
    first_end = next(e for e in cluster.events(job) if e["event"] == "task-exec-end")
    assert first_end["exit"] == 1
    assert pathlib.Path(first_end["stdout"]).read_text() == "fail-always: attempt\n"


def test_a_task_past_its_deadline_is_killed_and_its_job_fails(cluster, tasks):
    job = job_named(tasks, "sleep-past-deadline-run-")
    assert cluster.get("job", job, "cluster-env")["spec"]["activeDeadlineSeconds"] == 3
    done = wait_for(f"Job {job} to fail", lambda: job_condition(cluster.get("job", job, "cluster-env")), 90, cluster)
    assert done == ("Failed", "DeadlineExceeded"), cluster.logs()
    ends = wait_for("the killed task's end", lambda: [e for e in cluster.events(job) if e["event"] == "task-exec-end"], 30, cluster)
    assert ends[-1]["exit"] in (143, 137), ends  # SIGTERM (or SIGKILL) from the runner
    # Killed while it slept (how much it printed before depends on how soon the pod started).
    assert "woke up" not in pathlib.Path(ends[-1]["stdout"]).read_text()
    wait_for(f"the pods of {job} to be gone", lambda: not cluster.items("pod", "cluster-env", f"job-name={job}"), 60, cluster)


def test_a_container_task_fails_by_its_env(cluster, tasks):
    job = job_named(tasks, "container-exit-4-run-")
    done = wait_for(f"Job {job} to fail", lambda: job_condition(cluster.get("job", job, "cluster-env")), 90, cluster)
    assert done == ("Failed", "BackoffLimitExceeded")
    assert [e["exit"] for e in cluster.events(job) if e["event"] == "task-exec-end"][0] == 4


def test_deleting_a_job_removes_its_pods(cluster, tasks):
    job = job_named(tasks, "long-runner-run-")
    wait_for(f"a task of {job} to start", lambda: cluster.events(job), 90, cluster)
    pods = cluster.items("pod", "cluster-env", f"job-name={job}")
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"
    cluster.kubectl("delete", "job", job, "-n", "cluster-env", "--wait=false")
    # The garbage collector deletes the pod; the runner stops its process and finishes it.
    wait_for(f"the pods of {job} to be gone", lambda: not cluster.items("pod", "cluster-env", f"job-name={job}"), 90, cluster)
    ends = [e for e in cluster.events(job) if e["event"] == "task-exec-end"]
    assert len(ends) == 1 and ends[0]["exit"] in (143, 137), cluster.events(job)


def test_the_runner_resolves_env_and_volumes_as_a_kubelet_and_waits_for_a_missing_secret(cluster):
    ns = "resolve"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("apply", "-n", ns, "-f", str(CLUSTER_FIXTURES / "resolve.yaml"))

    def waiting():
        pods = cluster.items("pod", ns, "job-name=resolve-env")
        statuses = pods[0].get("status", {}).get("containerStatuses", []) if pods else []
        return statuses and (statuses[0]["state"].get("waiting") or {}).get("reason") == "CreateContainerConfigError" and pods[0]
    pod = wait_for("the pod to wait for Secret late-secret", waiting, 90, cluster)
    assert pod["status"]["phase"] == "Pending"
    assert 'secret "late-secret" not found' in pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    assert not cluster.events("resolve-env")  # nothing ran yet

    cluster.kubectl("create", "secret", "generic", "late-secret", "-n", ns,
                    "--from-literal=SECURE_DATA=s3cret", "--from-literal=token=t0ken")
    done = wait_for("Job resolve-env to finish", lambda: job_condition(cluster.get("job", "resolve-env", ns)), 90, cluster)
    assert done == ("Complete", "CompletionsReached"), cluster.logs()
    pod = cluster.get("pod", pod["metadata"]["name"], ns)
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    end = [e for e in cluster.events("resolve-env") if e["event"] == "task-exec-end"]
    assert len(end) == 1
    assert pathlib.Path(end[0]["stdout"]).read_text().splitlines() == [
        "FROM_CM hello",
        f"POD_NAME {pod['metadata']['name']}",
        f"POD_NS {ns}",
        "EXPANDED hello world",
        "PREFIX_colour blue",
        "SECURE_DATA s3cret",
        "token t0ken",
    ]


def test_a_job_annotation_decides_a_container_task_over_its_env(cluster):
    """The scenario's side of the container-task rule: an annotation on the Job it applies
    (here set on the rendered Job, as a kustomize patch in Git or the scenario would) wins over
    TESTENV_EXIT_CODE in the definition's env."""
    ns = "annotated"
    docs = render(str(CLUSTER_FIXTURES / "tasks"), "--namespace", ns)
    job = job_named(docs, "container-exit-4-run-")
    docs = [d for d in docs if d["kind"] != "Job" or d["metadata"]["name"] == job]
    for d in docs:
        if d["kind"] == "Job":
            d["metadata"]["annotations"]["testenv.klt-render.dev/exit-code"] = "0"
            d["metadata"]["annotations"]["testenv.klt-render.dev/sleep-seconds"] = "1"
    apply(cluster, ns, docs)
    done = wait_for(f"Job {job} to finish", lambda: job_condition(cluster.get("job", job, ns)), 90, cluster)
    assert done == ("Complete", "CompletionsReached"), cluster.logs()
    ends = [e for e in cluster.events(job) if e["event"] == "task-exec-end" and e["namespace"] == ns]
    assert [e["exit"] for e in ends] == [0]
    out = pathlib.Path(ends[0]["stdout"]).read_text()
    assert "exits 0 after 1s (annotation testenv.klt-render.dev/exit-code, annotation testenv.klt-render.dev/sleep-seconds)" in out


def test_an_evaluation_pod_runs_klt_evaluate_and_reports_its_summary_as_termination_message(cluster):
    """The evaluation Job's pod runs klt-evaluate via `klt-render run --pod` (KLT_EVALUATE from
    --klt-evaluate); the provider does not answer, so it fails after its retry, and the pod's
    terminated state carries the evaluator's one-line summary, as a kubelet reads the
    termination log."""
    docs = render(str(CLUSTER_FIXTURES / "evaluation"), "--namespace", "cluster-eval")
    job = job_named(docs, "pre-eval-gate-")
    apply(cluster, "cluster-eval", [d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == job])
    done = wait_for(f"Job {job} to fail", lambda: job_condition(cluster.get("job", job, "cluster-eval")), 120, cluster)
    assert done == ("Failed", "BackoffLimitExceeded"), cluster.logs()
    [pod] = cluster.items("pod", "cluster-eval", f"batch.kubernetes.io/job-name={job}")
    [status] = pod["status"]["containerStatuses"]
    term = status["state"]["terminated"]
    assert term["exitCode"] == 1, term
    message = term["message"]
    # One line, the evaluator's own: the objective, the provider that did not answer, the
    # attempts (how many retries 1 makes is klt-evaluate's reading of Keptn, not the runner's).
    assert "\n" not in message.strip(), message
    assert message.startswith("evaluation gate failed: objective rollout-ready has no value from provider prom (http://127.0.0.1:9): unreachable"), message
    assert re.search(r" \((\d+) of \1 attempts\)$", message.strip()), message
    # It is also the last line klt-evaluate wrote to stderr (what FallbackToLogsOnError takes).
    [end] = [e for e in cluster.events(job) if e["event"] == "task-exec-end"]
    assert pathlib.Path(end["stderr"]).read_text().strip().splitlines()[-1] == message.strip()
