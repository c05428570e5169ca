"""Argo CD's own sync engine runs rendered apps on the test cluster (issue 10's scenarios).

Each sync goes through tests/e2e/sync.sh: `klt-render generate` inside the real
argocd-cmp-server, gitops-engine's sync context driven as argo-cd v3.6.1's application
controller drives it, against testenv's cluster (API server, Job/Deployment/GC controllers,
scheduler, a kwok node, and a task runner that really executes the task code). Every claim
below is read from the timeline sync.sh prints (tests/e2e/README.md), with its timestamps.

One environment serves the whole module; each scenario uses its own app (namespace), and a
scenario's later syncs are the next Git revisions of its app on the same cluster.

Skipped only when the Go build is impossible here (sync.sh / run.sh exit 3).
"""

from __future__ import annotations

import http.server
import json
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import REPO, child_env, ensure_binary

SYNC = REPO / "tests" / "e2e" / "sync.sh"
RUN = REPO / "tests" / "argocd-cmp" / "run.sh"
E2E = REPO / "tests" / "fixtures" / "e2e"
IMPOSSIBLE = 3
BUILD_TIMEOUT_S = 45 * 60
SYNC_TIMEOUT_S = 8 * 60


class Timeline:
    """The JSON lines of one sync.sh call, with helpers to find events and their times."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.stderr = proc.stderr
        self.lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    def __repr__(self) -> str:
        shown = "\n".join(json.dumps(e) for e in self.lines if e["event"] != "sync-result")
        return f"exit {self.rc}\n{shown}\n--- stderr (tail)\n{self.stderr[-3000:]}"

    def events(self, event: str, kind: str | None = None, prefix: str = "") -> list[dict]:
        return [
            e
            for e in self.lines
            if e["event"] == event and (kind is None or e["kind"] == kind) and e["name"].startswith(prefix)
        ]

    def jobs(self, prefix: str) -> set[str]:
        """Jobs of this sync whose name starts with prefix (created or applied)."""
        return {e["name"] for e in self.lines if e["kind"] == "Job" and e["name"].startswith(prefix)}

    def result(self) -> dict:
        results = self.events("sync-result")
        assert len(results) == 1, self
        return results[0]

    def times(self, event: str, kind: str | None = None, prefix: str = "") -> list[float]:
        return [e["time"] for e in self.events(event, kind, prefix)]

    def task_runs(self, job: str) -> list[dict]:
        return [e for e in self.lines if e["event"] == "task-exec" and e["job"] == job]


@pytest.fixture(scope="module")
def env():
    """A test cluster kept for the module; sync.sh calls reuse it (--env-dir)."""
    binary = ensure_binary()
    build = subprocess.run(
        ["bash", str(RUN), "--build-only"],
        cwd=REPO,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if build.returncode == IMPOSSIBLE:
        pytest.skip(build.stderr.strip().splitlines()[-1] if build.stderr.strip() else "run.sh exit 3")
    assert build.returncode == 0, build.stderr[-4000:]
    run_sh = (REPO / "testenv" / "run.sh").read_text()
    assert "--cluster" in run_sh or '"cluster"' in (REPO / "testenv" / "main.go").read_text(), (
        "testenv has no --cluster mode: the Job controller, the node and the task runner are missing"
    )
    with tempfile.TemporaryDirectory(prefix="e2e-env.", dir="/tmp") as tmp:
        state = {"dir": tmp, "env": child_env({"KLT_RENDER_BIN": str(binary)})}
        try:
            yield state
        finally:
            subprocess.run(["bash", str(SYNC), "--stop", tmp], env=state["env"], capture_output=True, check=False)


def start(env) -> None:
    """Start the module's environment without syncing (to create what is not in Git)."""
    proc = subprocess.run(
        ["bash", str(SYNC), "--start", env["dir"]], cwd=REPO, env=env["env"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def sync(env, app_dir: pathlib.Path, *args: str) -> Timeline:
    proc = subprocess.run(
        ["bash", str(SYNC), str(app_dir), "--env-dir", env["dir"], "--timeout", "5m", *args],
        cwd=REPO,
        env=env["env"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SYNC_TIMEOUT_S,
        check=False,
    )
    if proc.returncode == IMPOSSIBLE:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode in (0, 1), f"sync.sh exit {proc.returncode}\n{proc.stderr[-6000:]}"
    return Timeline(proc)


def kubectl(env, *args: str) -> str:
    kubeconfig = pathlib.Path(env["dir"]) / "testenv" / "kubeconfig"
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def assert_jobs_ran(tl: Timeline, prefix: str, count: int) -> set[str]:
    """count Jobs named prefix*: created, succeeded, and their code ran once and exited 0."""
    jobs = {e["name"] for e in tl.events("job-created", "Job", prefix)}
    assert len(jobs) == count, f"Jobs {prefix}*: {sorted(jobs)}\n{tl}"
    for job in jobs:
        assert tl.events("job-succeeded", "Job", job), f"{job} did not succeed\n{tl}"
        ends = [e for e in tl.task_runs(job) if e["phase"] == "end"]
        assert [e["exit"] for e in ends] == [0], f"{job}: task runs {tl.task_runs(job)}\n{tl}"
    return jobs


def first(times: list[float]) -> float:
    assert times, "no such event"
    return min(times)


def last(times: list[float]) -> float:
    assert times, "no such event"
    return max(times)


def assert_keptn_order(tl: Timeline, app_pre: str, wl_pre: str, deployments: dict[str, int], wl_post: str, app_post: str):
    """app pre-tasks < workload pre-tasks < Deployments applied < all their pods Ready <
    workload post-tasks < app post-tasks, from the timeline's timestamps."""
    # App pre-deployment tasks finish (code and Job) before any workload pre-task starts.
    app_pre_done = max(last(tl.times("job-succeeded", "Job", app_pre)), last(task_ends(tl, app_pre)))
    assert app_pre_done < first(tl.times("job-created", "Job", wl_pre)), tl
    assert app_pre_done < first(task_starts(tl, wl_pre)), tl
    # Workload pre-tasks finish before any Deployment is applied.
    wl_pre_done = max(last(tl.times("job-succeeded", "Job", wl_pre)), last(task_ends(tl, wl_pre)))
    applied = {name: first(tl.times("apply", "Deployment", name)) for name in deployments}
    assert wl_pre_done < min(applied.values()), tl
    # Every pod of every Deployment is Ready before any workload post-task Job exists.
    ready = []
    for name, replicas in deployments.items():
        pods = [e for e in tl.events("pod-ready", "Pod") if e["owner"] == f"Deployment/{name}"]
        assert len(pods) >= replicas, f"{name}: {len(pods)} of {replicas} pods Ready\n{tl}"
        assert min(e["time"] for e in pods) > applied[name], tl
        ready.append(max(e["time"] for e in pods))
    assert max(ready) < first(tl.times("job-created", "Job", wl_post)), tl
    assert max(ready) < first(task_starts(tl, wl_post)), tl
    # App post-tasks come last.
    wl_post_done = max(last(tl.times("job-succeeded", "Job", wl_post)), last(task_ends(tl, wl_post)))
    assert wl_post_done < first(tl.times("job-created", "Job", app_post)), tl
    assert wl_post_done < first(task_starts(tl, app_post)), tl


def task_starts(tl: Timeline, prefix: str) -> list[float]:
    return [e["time"] for e in tl.lines if e["event"] == "task-exec" and e["job"].startswith(prefix) and e["phase"] == "start"]


def task_ends(tl: Timeline, prefix: str) -> list[float]:
    return [e["time"] for e in tl.lines if e["event"] == "task-exec" and e["job"].startswith(prefix) and e["phase"] == "end"]


def assert_succeeded(tl: Timeline):
    assert tl.rc == 0 and tl.result()["phase"] == "Succeeded", tl


# ---- scenario 1 and 2: first sync, then a re-sync of the same commit -----------------------


def test_multi_app_first_sync_then_resync_runs_nothing(env):
    app = E2E / "multi"
    tl = sync(env, app, "--revision", "1")
    assert_succeeded(tl)
    assert_jobs_ran(tl, "pre-app-check-", 2)  # shop and billing
    assert_jobs_ran(tl, "pre-migrate-", 2)  # shop-web, billing-api
    assert_jobs_ran(tl, "post-smoke-", 3)  # every workload
    assert_jobs_ran(tl, "post-app-report-", 2)
    assert_keptn_order(
        tl, "pre-app-check-", "pre-migrate-", {"shop-web": 2, "shop-cart": 1, "billing-api": 1}, "post-smoke-", "post-app-report-"
    )

    again = sync(env, app, "--revision", "1")
    assert_succeeded(again)
    assert again.events("job-created") == [], again
    assert again.events("task-exec") == [], again
    # Argo CD applied the same Jobs again (kubectl apply: unchanged), nothing was pruned.
    assert again.jobs("pre-") | again.jobs("post-") == tl.jobs("pre-") | tl.jobs("post-"), again
    assert again.events("prune") == [], again


class Local(http.server.BaseHTTPRequestHandler):
    """Stands in for what examples/checkout's tasks call: the Slack webhook (POST) and
    checkout-api's /healthz (GET); the environment has no cluster DNS."""

    requests: list[tuple[str, str, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        Local.requests.append(("POST", self.path, body))
        self.send_response(200)
        self.end_headers()

    def do_GET(self):
        Local.requests.append(("GET", self.path, b""))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def local_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Local)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_checkout_example_first_sync(env, local_server, tmp_path):
    # examples/checkout as is, but for two things a real cluster would provide: the smoke
    # test's URL (a Service of the cluster) points at a local server, and the Secret its deno
    # task reads (never in Git) holds the local webhook's URL.
    app = tmp_path / "checkout"
    shutil.copytree(REPO / "examples" / "checkout", app)
    tasks = app / "tasks.yaml"
    text = tasks.read_text()
    assert "url: http://checkout-api/healthz" in text
    tasks.write_text(text.replace("url: http://checkout-api/healthz", f"url: {local_server}/healthz"))
    start(env)
    kubectl(env, "create", "namespace", "checkout")
    kubectl(env, "-n", "checkout", "create", "secret", "generic", "slack-webhook", f"--from-literal=SECURE_DATA={local_server}/hook")

    tl = sync(env, app)
    assert_succeeded(tl)
    for prefix in ("pre-check-dependencies-", "pre-db-migrate-", "post-smoke-test-", "post-notify-release-"):
        assert_jobs_ran(tl, prefix, 1)
    assert_keptn_order(
        tl,
        "pre-check-dependencies-",
        "pre-db-migrate-",
        {"checkout-api": 2, "checkout-worker": 1},
        "post-smoke-test-",
        "post-notify-release-",
    )
    # The code really ran: the smoke test fetched /healthz, the deno task posted its message.
    assert ("GET", "/healthz", b"") in Local.requests
    posted = [json.loads(body) for method, path, body in Local.requests if method == "POST" and path == "/hook"]
    assert {"channel": "#deployments", "text": "checkout released (checkout 1.4.0, post)"} in posted


# ---- scenario 4: a failing pre-deployment task, then the fix; a task past its timeout -------


def test_failing_pre_task_stops_the_rollout_and_the_fix_completes_it(env):
    base = E2E / "failing"
    first_sync = sync(env, base / "1", "--app-name", "payments")
    assert_succeeded(first_sync)

    broken = sync(env, base / "2", "--app-name", "payments")
    result = broken.result()
    # Argo CD: the Degraded Job fails its wave, the operation ends Failed (no retry by default).
    assert broken.rc == 1 and result["phase"] == "Failed" and not result["timedOut"], broken
    failed = broken.events("job-failed", "Job", "pre-migrate-")
    assert len(failed) == 1 and failed[0]["reason"] == "BackoffLimitExceeded", broken
    job = failed[0]["name"]
    # retries 1 = backoffLimit 1: the code ran twice (restartPolicy OnFailure: in one pod).
    assert [e["exit"] for e in broken.task_runs(job) if e["phase"] == "end"] == [1, 1], broken
    assert broken.events("apply", "Deployment") == [], broken
    # No post task ran (revision 1's post Job was pruned first: prunes go in reverse wave order).
    assert broken.events("job-created", "Job", "post-") == [], broken
    assert [e for e in broken.events("task-exec") if e["job"].startswith("post-")] == [], broken
    image = kubectl(env, "-n", "payments", "get", "deployment", "payments-api", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image == "registry.invalid/payments-api:1.0.0"

    fixed = sync(env, base / "3", "--app-name", "payments")
    assert_succeeded(fixed)
    assert_jobs_ran(fixed, "pre-migrate-", 1)
    assert fixed.events("apply", "Deployment", "payments-api"), fixed
    assert_jobs_ran(fixed, "post-smoke-", 1)
    assert first(fixed.times("job-succeeded", "Job", "pre-migrate-")) < first(fixed.times("apply", "Deployment")), fixed
    image = kubectl(env, "-n", "payments", "get", "deployment", "payments-api", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image == "registry.invalid/payments-api:1.1.0"
    # The failed Job of revision 2 and revision 1's Jobs are gone from Git: Argo CD prunes them.
    assert job in {e["name"] for e in fixed.events("prune", "Job")}, fixed


def test_task_past_its_timeout_is_killed_by_active_deadline(env):
    tl = sync(env, E2E / "timeout")
    assert tl.rc == 1 and tl.result()["phase"] == "Failed", tl
    failed = tl.events("job-failed", "Job", "pre-hang-")
    assert len(failed) == 1 and failed[0]["reason"] == "DeadlineExceeded", tl
    # timeout: 5s -> activeDeadlineSeconds: 5, counted from the Job's start, which comes
    # after its creation (job-started is when the watch saw it: later than the real start).
    created = first(tl.times("job-created", "Job", "pre-hang-"))
    assert 5 <= failed[0]["time"] - created < 60, tl
    assert [e["phase"] for e in tl.task_runs(failed[0]["name"])][:1] == ["start"], tl
    assert tl.events("apply", "Deployment") == [], tl


# ---- scenario 5: hooks mode ------------------------------------------------------------------


def test_hooks_run_on_every_sync_and_their_delete_policy_works(env):
    app, name = E2E / "multi", ["--app-name", "shop-hooks", "--mode", "hooks"]
    one = sync(env, app, *name)
    assert_succeeded(one)
    presync = {e["name"] for e in one.events("apply", "Job") if e.get("hook") == "PreSync"}
    postsync = {e["name"] for e in one.events("apply", "Job") if e.get("hook") == "PostSync"}
    assert len(presync) == 4 and len(postsync) == 5, one
    for job in presync | postsync:
        assert [e["exit"] for e in one.task_runs(job) if e["phase"] == "end"] == [0], one
    assert last(one.times("job-succeeded", "Job", "pre-")) < first(one.times("apply", "Deployment")), one
    ready = last([e["time"] for e in one.events("pod-ready") if e["owner"].startswith("Deployment/")])
    assert ready < first(one.times("job-created", "Job", "post-")), one

    # The same commit again: every hook runs again (BeforeHookCreation deletes the old one first).
    two = sync(env, app, *name)
    assert_succeeded(two)
    created = {e["name"] for e in two.events("job-created")}
    assert created == presync | postsync, two
    for job in created:
        assert [e["exit"] for e in two.task_runs(job) if e["phase"] == "end"] == [0], two
        deleted = two.times("job-deleted", "Job", job)
        assert deleted and max(deleted) < first(two.times("job-created", "Job", job)), two
    assert two.events("prune") == [], two

    # Switching to hook-delete-policy HookSucceeded: the hooks of the last sync are still there
    # and BeforeHookCreation no longer applies, so Argo CD applies the completed Jobs again,
    # finds them Healthy and does NOT run them (gitops-engine: a hook is re-created only when
    # it is missing or BeforeHookCreation deleted it); once the operation succeeded it deletes
    # them (HookSucceeded).
    switch = sync(env, app, *name, "--param", "hook-delete-policy=HookSucceeded")
    assert_succeeded(switch)
    assert switch.events("job-created") == [] and switch.events("task-exec") == [], switch
    assert {e["name"] for e in switch.events("job-deleted")} == presync | postsync, switch
    # From then on every sync creates, runs and deletes them.
    after = sync(env, app, *name, "--param", "hook-delete-policy=HookSucceeded")
    assert_succeeded(after)
    created = {e["name"] for e in after.events("job-created")}
    assert created == presync | postsync, after
    for job in created:
        assert [e["exit"] for e in after.task_runs(job) if e["phase"] == "end"] == [0], after
    gone = {e["name"] for e in after.events("job-deleted")}
    assert created <= gone, after
    # HookSucceeded deletes a hook only after it succeeded.
    for job in created:
        assert first(after.times("job-deleted", "Job", job)) > last(after.times("job-succeeded", "Job", job)), after


# ---- scenario 3: upgrades re-run what Keptn re-runs -----------------------------------------


def job_labels(env, namespace: str) -> dict[str, dict]:
    jobs = json.loads(kubectl(env, "-n", namespace, "get", "jobs", "-o", "json"))["items"]
    return {j["metadata"]["name"]: j["metadata"].get("labels", {}) for j in jobs}


def created_tasks(env, tl: Timeline, namespace: str) -> set[tuple[str, str, str]]:
    """(app, phase, workload) of every Job this sync created; each ran its code once, exit 0."""
    labels = job_labels(env, namespace)
    out = set()
    for e in tl.events("job-created", "Job"):
        job = e["name"]
        assert [r["exit"] for r in tl.task_runs(job) if r["phase"] == "end"] == [0], tl
        lab = labels[job]
        out.add((lab["klt-render.dev/app"], lab["klt-render.dev/phase"], lab.get("klt-render.dev/workload", "")))
    return out


def replace_once(path: pathlib.Path, old: str, new: str):
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


def test_upgrades_rerun_exactly_the_tasks_keptn_reruns(env, tmp_path):
    app = tmp_path / "upgrade"
    shutil.copytree(E2E / "multi", app)
    assert_succeeded(sync(env, app))

    # One workload's version: its tasks and its app's tasks run again, nothing of the others.
    replace_once(app / "apps.yaml", '- name: shop-web\n      version: "1.0.0"', '- name: shop-web\n      version: "1.0.1"')
    replace_once(app / "workloads.yaml", 'app.kubernetes.io/version: "1.0.0"', 'app.kubernetes.io/version: "1.0.1"')
    replace_once(app / "workloads.yaml", "shop-web:1.0.0", "shop-web:1.0.1")
    bumped = sync(env, app)
    assert_succeeded(bumped)
    assert created_tasks(env, bumped, "upgrade") == {
        ("shop", "app-pre", ""),
        ("shop", "workload-pre", "shop-shop-web"),
        ("shop", "workload-post", "shop-shop-web"),
        ("shop", "app-post", ""),
    }, bumped

    # Only the KeptnApp's revision: only that app's own tasks run again.
    replace_once(app / "apps.yaml", 'version: "0.9.0"\n  workloads:', 'version: "0.9.0"\n  revision: 2\n  workloads:')
    revised = sync(env, app)
    assert_succeeded(revised)
    assert created_tasks(env, revised, "upgrade") == {("billing", "app-pre", ""), ("billing", "app-post", "")}, revised


# ---- scenario 6: prune, TaskRecords and their Lua health ------------------------------------


def record(env, namespace: str, name: str) -> dict:
    return json.loads(kubectl(env, "-n", namespace, "get", "taskrecords.klt-render.dev", name, "-o", "json"))


def wait_record(env, namespace: str, name: str, ok, what: str) -> dict:
    """The record once ok(record) holds (the reconciler works asynchronously to the sync)."""
    deadline = time.monotonic() + 30
    last = None
    while time.monotonic() < deadline:
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", str(pathlib.Path(env["dir"]) / "testenv" / "kubeconfig"),
             "-n", namespace, "get", "taskrecords.klt-render.dev", name, "-o", "json"],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode == 0:
            last = json.loads(proc.stdout)
            if ok(last):
                return last
        time.sleep(0.3)
    raise AssertionError(f"record {namespace}/{name} not {what} within 30 s; last seen: {json.dumps(last, indent=1)}")


def listed_records(env, namespace: str) -> dict[str, str]:
    """`kubectl get taskrecords`: name -> PHASE column."""
    out = kubectl(env, "-n", namespace, "get", "taskrecords", "--no-headers", "-o", "custom-columns=NAME:.metadata.name,PHASE:.status.phase")
    return dict(line.split() for line in out.splitlines() if line.strip())


def last_health(tl: Timeline, kind: str, name: str) -> str:
    states = [e["status"] for e in tl.events("health", kind, name) if e["name"] == name]
    assert states, tl
    return states[-1]


def archived(r: dict) -> bool:
    return r["metadata"].get("labels", {}).get("klt-render.dev/archived") == "true"


def assert_archived(r: dict):
    """An archived copy: not Argo CD's any more (no tracking), so not part of the app."""
    assert archived(r), r["metadata"]
    assert "app.kubernetes.io/instance" not in r["metadata"].get("labels", {}), r["metadata"]
    assert not [k for k in r["metadata"].get("annotations", {}) if k.startswith("argocd.argoproj.io/")], r["metadata"]


def test_upgrade_prunes_old_jobs_and_records_keep_their_history(env):
    one = sync(env, E2E / "upgrade" / "1", "--app-name", "ledger", "--records")
    assert_succeeded(one)
    assert last_health(one, "TaskRecord", "ledger-1.0.0") == "Healthy", one  # argo-cd's Lua
    assert record(env, "ledger", "ledger-1.0.0")["status"]["phase"] == "Succeeded"
    old_jobs = one.jobs("pre-") | one.jobs("post-")
    assert len(old_jobs) == 2, one

    two = sync(env, E2E / "upgrade" / "2", "--app-name", "ledger", "--records")
    assert_succeeded(two)
    pruned = {e["name"] for e in two.events("prune", "Job")}
    assert old_jobs <= pruned, two
    # Argo CD prunes the previous app version's record too (it left Git), first of all
    # (reverse wave order); the reconciler archives it: same name, status kept, no tracking.
    assert {e["name"] for e in two.events("prune", "TaskRecord")} == {"ledger-1.0.0"}, two
    old = wait_record(
        env, "ledger", "ledger-1.0.0",
        lambda r: archived(r) and all(t["jobDeleted"] for t in r.get("status", {}).get("tasks", [])),
        "archived with its Jobs marked deleted",
    )
    assert_archived(old)
    assert old["status"]["phase"] == "Succeeded"
    assert {t["job"]: (t["state"], t["jobDeleted"]) for t in old["status"]["tasks"]} == {j: ("Succeeded", True) for j in old_jobs}
    # The new version's record: Succeeded, and Healthy by argo-cd's Lua; both readable.
    new_jobs = {e["name"] for e in two.events("job-created", "Job")}
    assert len(new_jobs) == 2 and not new_jobs & old_jobs, two
    new = record(env, "ledger", "ledger-1.1.0")
    assert new["status"]["phase"] == "Succeeded"
    assert {t["job"] for t in new["status"]["tasks"]} == new_jobs
    assert last_health(two, "TaskRecord", "ledger-1.1.0") == "Healthy", two
    # (`kubectl get taskrecords` also lists the workload versions' records, the reconciler's own.)
    shown = listed_records(env, "ledger")
    assert {k: shown.get(k) for k in ("ledger-1.0.0", "ledger-1.1.0")} == {"ledger-1.0.0": "Succeeded", "ledger-1.1.0": "Succeeded"}, shown
    # The archived copy is not the app's: a re-sync neither applies nor prunes it, and its
    # health is reported as untracked.
    again = sync(env, E2E / "upgrade" / "2", "--app-name", "ledger", "--records", "--revision", "2")
    assert_succeeded(again)
    assert again.events("prune") == [] and again.events("job-created") == [], again
    assert {e["name"] for e in again.events("apply", "TaskRecord")} == {"ledger-1.1.0"}, again
    assert not [e for e in again.events("health", "TaskRecord", "ledger-1.0.0") if e["tracked"]], again


def test_failing_task_record_is_degraded(env):
    base = E2E / "failing"
    first_sync = sync(env, base / "1", "--app-name", "payments-rec", "--records")
    assert_succeeded(first_sync)
    old_jobs = first_sync.jobs("pre-") | first_sync.jobs("post-")
    broken = sync(env, base / "2", "--app-name", "payments-rec", "--records")
    assert broken.rc == 1 and broken.result()["phase"] == "Failed", broken
    # The sync stopped before the record's wave, so Argo CD never applied the app version's
    # record; the workload version's record (the reconciler's) is Failed, and Lua says Degraded.
    assert broken.events("apply", "TaskRecord") == [], broken
    name = "payments-payments-api-1.1.0"
    failed = record(env, "payments-rec", name)
    assert failed["status"]["phase"] == "Failed"
    [task] = failed["status"]["tasks"]
    assert task["job"].startswith("pre-migrate-") and task["state"] == "Failed", failed
    assert "BackoffLimitExceeded" in task["message"], failed
    health = [e for e in broken.events("health", "TaskRecord", name)]
    assert health and health[-1]["status"] == "Degraded" and not health[-1]["tracked"], broken
    assert task["job"] in health[-1]["message"], broken
    # Revision 1's record was pruned before the failing wave: archived, still Succeeded.
    old = wait_record(env, "payments-rec", "payments-1.0.0", archived, "archived")
    assert_archived(old)
    assert old["status"]["phase"] == "Succeeded"
    assert {t["job"] for t in old["status"]["tasks"]} == old_jobs


# ---- the last wave: Argo CD does not wait for its health ------------------------------------


def test_failing_app_post_task_fails_the_sync(env):
    # gitops-engine marks an operation Succeeded once its last wave is applied ("EVEN if those
    # objects subsequently degrades", pkg/sync/sync_context.go), so the app post-task's Job is
    # never the last wave: without records the app version's sync gate ConfigMap follows it.
    # Argo CD waits for the Job's wave to be Healthy before the gate's, so the failing Job
    # fails the operation and the gate is never applied.
    plain = sync(env, E2E / "postfail", "--app-name", "notes")
    assert plain.rc == 1 and plain.result()["phase"] == "Failed", plain
    assert "one or more synchronization tasks completed unsuccessfully" in plain.result()["message"], plain
    [failed] = plain.events("job-failed", "Job", "post-verify-")
    # (restartPolicy OnFailure: the node may restart the container once before the Job
    # controller counts the failure against backoffLimit 0.)
    assert {e["exit"] for e in plain.task_runs(failed["name"]) if e["phase"] == "end"} == {1}, plain
    assert last_health(plain, "Job", failed["name"]) == "Degraded", plain
    gates = [e for e in plain.events("apply", "ConfigMap") if e["name"].endswith("-sync-gate")]
    assert gates == [], plain
    assert first(plain.times("job-succeeded", "Job", "pre-announce-")) < first(plain.times("apply", "Deployment")), plain

    # With records the record is the last wave instead: Argo CD waits for the post-task wave's health
    # before applying it, so the failing Job fails the operation; the record (made by the
    # reconciler from the Job labels, as Argo CD never reached its wave) says Failed.
    rec = sync(env, E2E / "postfail", "--app-name", "notes-rec", "--records")
    assert rec.rc == 1 and rec.result()["phase"] == "Failed", rec
    [failed] = rec.events("job-failed", "Job", "post-verify-")
    assert "one or more synchronization tasks completed unsuccessfully" in rec.result()["message"], rec
    assert rec.events("apply", "TaskRecord") == [], rec
    assert first(rec.times("job-succeeded", "Job", "pre-announce-")) < first(rec.times("apply", "Deployment")), rec
    r = wait_record(env, "notes-rec", "notes-2.0.0", lambda r: r.get("status", {}).get("phase") == "Failed", "Failed")
    by_job = {t["job"]: t for t in r["status"]["tasks"]}
    assert by_job[failed["name"]]["state"] == "Failed" and by_job[failed["name"]]["phase"] == "app-post", r
    assert {t["state"] for j, t in by_job.items() if j != failed["name"]} == {"Succeeded"}, r
    assert last_health(rec, "TaskRecord", "notes-2.0.0") == "Degraded", rec


# ---- evaluations: a real Prometheus gates the rollout ---------------------------------------


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    """A real Prometheus (test_evaluator's helpers: Debian's package) scraping a target whose
    klt_rollout_ready the test sets: gate["open"](True/False) waits until Prometheus has it."""
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.skip("prometheus not on PATH (scripts/test.sh installs Debian's prometheus)")
    from test_evaluator import ScrapeTarget, get_json, start_prometheus, stop

    class Gate(ScrapeTarget):
        ready = 0

    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gate)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    config = f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: rollout
    static_configs:
      - targets: ["127.0.0.1:{target.server_address[1]}"]
"""
    proc, url = start_prometheus(tmp_path_factory.mktemp("gate-prometheus"), config)

    def open_(value: bool):
        Gate.ready = int(value)
        deadline = time.monotonic() + 30
        while True:
            got = get_json(f"{url}/api/v1/query?query=max(klt_rollout_ready)")["data"]["result"]
            if got and float(got[0]["value"][1]) == Gate.ready:
                return
            assert time.monotonic() < deadline, f"prometheus does not show klt_rollout_ready {Gate.ready}: {got}"
            time.sleep(0.3)

    try:
        yield {"url": url, "open": open_}
    finally:
        stop(proc)
        target.shutdown()


def gated_revision(tmp_path: pathlib.Path, n: int, url: str) -> pathlib.Path:
    app = tmp_path / f"gated-{n}"
    shutil.copytree(E2E / "gated" / str(n), app)
    replace_once(app / "app.yaml", "targetServer: PROMETHEUS_URL", f"targetServer: {url}")
    return app


def test_a_failing_pre_deployment_evaluation_stops_the_rollout_and_a_passing_one_lets_it_through(env, gate, tmp_path):
    gate["open"](False)
    closed = sync(env, gated_revision(tmp_path, 1, gate["url"]), "--app-name", "gated", "--records")
    # The evaluation Job (klt-evaluate, run by the task runner against Prometheus) fails its
    # wave: the operation fails, the Deployment is never applied, no post task runs.
    assert closed.rc == 1 and closed.result()["phase"] == "Failed", closed
    [failed] = closed.events("job-failed", "Job", "pre-eval-rollout-ready-")
    assert failed["reason"] == "BackoffLimitExceeded", closed
    assert closed.events("apply", "Deployment") == [], closed
    assert closed.events("job-created", "Job", "post-") == [], closed
    [run] = [e for e in closed.task_runs(failed["name"]) if e["phase"] == "end"]
    assert run["exit"] == 1, closed
    # The record (made by the reconciler: Argo CD never reached its wave) is Failed and names
    # the objective, with the value Prometheus gave; argo-cd's Lua says Degraded with it.
    r = wait_record(env, "gated", "gated-1.0.0", lambda r: r.get("status", {}).get("phase") == "Failed", "Failed")
    [entry] = [t for t in r["status"]["tasks"] if t["job"] == failed["name"]]
    assert entry["evaluation"] is True and entry["state"] == "Failed", r
    assert entry["message"].startswith("evaluation rollout-ready failed: objective rollout-ready value 0 does not meet >0"), r
    health = [e for e in closed.events("health", "TaskRecord", "gated-1.0.0")]
    assert health and health[-1]["status"] == "Degraded", closed
    assert "objective rollout-ready value 0 does not meet >0" in health[-1]["message"], closed

    # The gate opens; the next version's evaluation passes and the rollout goes through.
    gate["open"](True)
    passed = sync(env, gated_revision(tmp_path, 2, gate["url"]), "--app-name", "gated", "--records")
    assert_succeeded(passed)
    [ok] = passed.events("job-succeeded", "Job", "pre-eval-rollout-ready-")
    assert [e["exit"] for e in passed.task_runs(ok["name"]) if e["phase"] == "end"] == [0], passed
    assert ok["time"] < first(passed.times("apply", "Deployment", "gated-api")), passed
    assert_jobs_ran(passed, "post-announce-", 1)
    image = kubectl(env, "-n", "gated", "get", "deployment", "gated-api", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image == "registry.invalid/gated-api:1.0.1"
    r = wait_record(env, "gated", "gated-1.0.1", lambda r: r.get("status", {}).get("phase") == "Succeeded", "Succeeded")
    kinds = {t["job"]: t.get("evaluation", False) for t in r["status"]["tasks"]}
    assert kinds == {ok["name"]: True, passed.events("job-created", "Job", "post-announce-")[0]["name"]: False}, r
    assert last_health(passed, "TaskRecord", "gated-1.0.1") == "Healthy", passed
