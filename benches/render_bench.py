#!/usr/bin/env python3
"""Benchmark of `klt-render render` on generated repositories of N Keptn apps.

    cargo build --release && python3 benches/render_bench.py            # 100, 1,000, 10,000 apps
    python3 benches/render_bench.py --quick                             # 100 and 1,000 apps
    python3 benches/render_bench.py --sizes 300,3000 --runs 3

It prints figures, not a verdict: the closing "targets" block says MET or MISSED for each target
but the exit status is 0 either way. It is non-zero only when a command fails (klt-render or
kubectl exits non-zero; its stderr is printed), or when an output is not what the generated
input asks for: a render that is empty, reports an error or does not hold the expected number
of Jobs (the benchmark would not be measuring real work), or a floor or kustomize output that
does not hold every document.

Standard library only. See benches/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BIN = REPO / "target" / "release" / "klt-render"
EXAMPLE = REPO / "examples" / "checkout"

MB = 1_000_000  # throughput and sizes are decimal megabytes
MIB = 1024 * 1024

# Targets (see README.md).
TARGET_RENDER_OVER_FLOOR = 2.0  # render time / floor time, at every size
TARGET_KUSTOMIZE_OVER_RENDER = 20.0  # kustomize time / render time, at 100 apps
TARGET_GROWTH = 11.0  # time(10,000 apps) / time(1,000 apps)
TARGET_RSS_FACTOR = 3  # peak RSS < 3 x input bytes + 30 MB
TARGET_RSS_SLACK = 30 * MB
TARGET_STARTUP_MS = 10.0  # one-app render, process start to exit
KUSTOMIZE_MAX_APPS = 1000  # never run kustomize above this


class CommandFailed(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------

RUNNER_IMAGES = ["curlimages/curl:8.11.1", "curlimages/curl:8.10.1", "alpine/curl:8.9.1"]
TEAMS = ["payments", "search", "identity", "catalog", "shipping", "billing", "growth"]
STAGES = ["dev", "staging", "prod"]
CHANNELS = ["#deployments", "#releases", "#ops", "#alerts"]


@dataclass
class AppStats:
    files: int = 0
    bytes: int = 0
    documents: int = 0
    jobs: int = 0


def _app_documents(i: int) -> tuple[dict[str, list], int]:
    """The documents of app number i, grouped by role (app, tasks, deployments, service, config),
    and the number of Jobs they should render to.

    Everything is keyed on the app's number so that names, code, parameters and metadata (and
    therefore content hashes) differ from one app to the next, while staying deterministic.
    """
    app = f"app-{i:05d}"
    api, worker = f"{app}-api", f"{app}-worker"
    d = {k: f"{app}-{k}" for k in ("check-dependencies", "slack-notification", "notify-release",
                                  "smoke-test", "db-migrate")}
    team, stage = TEAMS[i % len(TEAMS)], STAGES[i % len(STAGES)]
    app_version = f"{1 + i % 3}.{i % 17}.{i % 5}"
    api_version = app_version
    worker_version = f"{2 + i % 2}.{i % 11}.{i % 3}"
    commit = f"{(i * 2654435761) & 0xFFFFFFF:07x}"
    port = 8000 + i % 1000
    # Every fourth app also runs notify-release after its worker: a fifth Job (a second use of
    # the same definition, in another phase and context).
    worker_post = i % 4 == 0

    app_docs = [
        f"""# {app}: two workloads deployed together. The KeptnApp pins the app version and
# the workload versions that belong to it; bumping `revision` re-runs the app-level tasks.
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnApp
metadata:
  name: {app}
spec:
  version: "{app_version}"
  revision: {1 + i % 4}
  workloads:
    - name: {api}
      version: "{api_version}"
    - name: {worker}
      version: "{worker_version}"
""",
        f"""# App-level tasks: run before any workload of the app version and after all of them.
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnAppContext
metadata:
  name: {app}
spec:
  preDeploymentTasks:
    - {d['check-dependencies']}
  postDeploymentTasks:
    - {d['notify-release']}
  metadata:
    team: {team}
    stage: {stage}
    cost-center: "cc-{i % 97:03d}"
""",
    ]

    task_docs = [
        f"""# Container runner: any image; Keptn adds KEPTN_CONTEXT to its env.
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnTaskDefinition
metadata:
  name: {d['check-dependencies']}
spec:
  retries: {1 + i % 4}
  timeout: {1 + i % 5}m
  container:
    name: check
    image: {RUNNER_IMAGES[i % len(RUNNER_IMAGES)]}
    command: ["sh", "-c"]
    args:
      - curl -fsS --max-time {5 + i % 20} http://{team}.{team}.svc.cluster.local/healthz?caller={app}
""",
        f"""# Deno runner with inline code, parameters and a Secret (key SECURE_DATA).
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnTaskDefinition
metadata:
  name: {d['slack-notification']}
spec:
  deno:
    inline:
      code: |
        // {app}: post a message about the deployment (attempt budget {1 + i % 6}).
        const data = JSON.parse(Deno.env.get("DATA") ?? "{{}}");
        const context = JSON.parse(Deno.env.get("KEPTN_CONTEXT") ?? "{{}}");
        const webhook = Deno.env.get("SECURE_DATA");
        const text = `${{data.text}} (${{context.appName}} ${{context.appVersion}}, ${{context.taskType}})`;
        const res = await fetch(webhook!, {{
          method: "POST",
          headers: {{ "content-type": "application/json", "x-app": "{app}" }},
          body: JSON.stringify({{ channel: data.channel, text, icon: ":{team}:" }}),
        }});
        if (!res.ok) {{
          console.error(`{app}: slack answered ${{res.status}}`);
          Deno.exit({1 + i % 3});
        }}
    parameters:
      map:
        channel: "{CHANNELS[i % len(CHANNELS)]}"
        text: "deployment of {app} finished"
    secureParameters:
      secret: {app}-slack-webhook
""",
        f"""# functionRef: reuses the slack-notification code; its own parameters win.
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnTaskDefinition
metadata:
  name: {d['notify-release']}
spec:
  deno:
    functionRef:
      name: {d['slack-notification']}
    parameters:
      map:
        text: "{app} {app_version} released"
""",
        f"""# Python runner with inline code, run after {api} is up.
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnTaskDefinition
metadata:
  name: {d['smoke-test']}
  labels:
    sidecar.istio.io/inject: "false"
spec:
  timeout: {30 + i % 90}s
  python:
    inline:
      code: |
        import json, os, sys, urllib.request
        data = json.loads(os.environ.get("DATA", "{{}}"))
        ctx = json.loads(os.environ["KEPTN_CONTEXT"])
        url = data["url"]
        expected = {200 + (i % 2) * 4}
        with urllib.request.urlopen(url, timeout={5 + i % 10}) as r:
            print(f"{{ctx['workloadName']}} {{ctx['workloadVersion']}}: {{url}} -> {{r.status}}")
            sys.exit(0 if r.status == expected else 1)
    parameters:
      map:
        url: http://{api}:{port}/healthz
        attempt: "{i % 9}"
""",
        f"""# Python runner whose code lives in a ConfigMap of the app.
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnTaskDefinition
metadata:
  name: {d['db-migrate']}
spec:
  python:
    configMapRef:
      name: {app}-db-migrate-code
    parameters:
      map:
        database: {app.replace('-', '_')}
        schema: "v{i % 23}"
""",
    ]

    worker_annotations = (
        f"""      annotations:
        keptn.sh/post-deployment-tasks: {d['notify-release']}
"""
        if worker_post
        else ""
    )
    deployment_docs = [
        f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {api}
spec:
  replicas: {1 + i % 3}
  selector:
    matchLabels:
      app.kubernetes.io/name: {api}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {api}
        app.kubernetes.io/part-of: {app}
        app.kubernetes.io/version: "{api_version}"
      annotations:
        keptn.sh/pre-deployment-tasks: {d['db-migrate']}
        keptn.sh/post-deployment-tasks: {d['smoke-test']}
        keptn.sh/metadata: commit={commit},ticket=PAY-{i % 1000}
    spec:
      containers:
        - name: api
          image: ghcr.io/example/{api}:{api_version}
          ports:
            - containerPort: {port}
""",
        f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {worker}
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: {worker}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {worker}
        app.kubernetes.io/part-of: {app}
        app.kubernetes.io/version: "{worker_version}"
{worker_annotations}    spec:
      containers:
        - name: worker
          image: ghcr.io/example/{worker}:{worker_version}
""",
    ]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": api},
        "spec": {
            "selector": {"app.kubernetes.io/name": api},
            "ports": [{"port": 80, "targetPort": port}],
        },
    }
    config_doc = f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: {app}-db-migrate-code
data:
  code: |
    import json, os
    data = json.loads(os.environ["DATA"])
    print(f"{app}: migrating database {{data['database']}} to {{data['schema']}}")
"""
    docs = {
        "app": app_docs,
        "tasks": task_docs,
        "deployments": deployment_docs,
        "service": [service],  # a dict: written as YAML or as a JSON file
        "config": [config_doc],
    }
    # check-dependencies (app pre), db-migrate (api pre), smoke-test (api post), notify-release
    # (app post), and notify-release after the worker in every fourth app. slack-notification
    # runs only through notify-release's functionRef.
    return docs, 4 + (1 if worker_post else 0)


def _service_yaml(s: dict) -> str:
    port = s["spec"]["ports"][0]
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {s['metadata']['name']}
spec:
  selector:
    app.kubernetes.io/name: {s['spec']['selector']['app.kubernetes.io/name']}
  ports:
    - port: {port['port']}
      targetPort: {port['targetPort']}
"""


def _stream(docs: list[str]) -> str:
    return "---\n".join(docs)


def write_app(root: Path, i: int) -> tuple[AppStats, list[str]]:
    """Writes app number i under root/app-NNNNN/ in 2, 3 or 4 files; returns its stats and the
    paths of its files relative to root."""
    g, jobs = _app_documents(i)
    app = f"app-{i:05d}"
    svc_yaml = _service_yaml(g["service"][0])
    layout = i % 3
    if layout == 0:  # 2 files: everything Keptn in one, the workloads in the other
        files = {
            "keptn.yaml": _stream(g["app"] + g["tasks"]),
            "workloads.yml": _stream(g["deployments"] + [svc_yaml] + g["config"]),
        }
    elif layout == 1:  # 3 files: the shape of examples/checkout
        files = {
            "app.yaml": _stream(g["app"]),
            "tasks.yaml": _stream(g["tasks"]),
            "workloads.yaml": _stream(g["deployments"] + [svc_yaml] + g["config"]),
        }
    else:  # 4 files, one of them JSON
        files = {
            "app.yaml": _stream(g["app"]),
            "tasks.yml": _stream(g["tasks"]),
            "deployments.yaml": _stream(g["deployments"] + g["config"]),
            "service.json": json.dumps(g["service"][0], indent=2) + "\n",
        }
    d = root / app
    d.mkdir(parents=True)
    st = AppStats(files=len(files))
    rel = []
    for name, text in files.items():
        data = text.encode()
        (d / name).write_bytes(data)
        st.bytes += len(data)
        rel.append(f"{app}/{name}")
    st.documents = sum(len(v) for v in g.values())
    st.jobs = jobs
    return st, rel


@dataclass
class Repo:
    root: Path
    apps: int
    files: int
    bytes: int
    documents: int
    jobs: int
    paths: list[str] = field(default_factory=list)


def generate(root: Path, n: int) -> Repo:
    root.mkdir(parents=True)
    repo = Repo(root, n, 0, 0, 0, 0)
    for i in range(n):
        st, rel = write_app(root, i)
        repo.files += st.files
        repo.bytes += st.bytes
        repo.documents += st.documents
        repo.jobs += st.jobs
        repo.paths.extend(rel)
    return repo


def write_kustomization(repo: Repo) -> None:
    """A kustomization.yaml at the root listing every file: kustomize reads them and writes
    them out unchanged. (klt-render skips files named kustomization.yaml.)"""
    with open(repo.root / "kustomization.yaml", "w") as f:
        f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n")
        for p in repo.paths:
            f.write(f"  - {p}\n")


# ---------------------------------------------------------------------------------------------
# Running and measuring
# ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    wall: float  # seconds
    maxrss: int  # bytes (ru_maxrss of the child, from wait4)
    cpu: float  # user + system seconds of the child


def _clean_env() -> dict[str, str]:
    # KLT_* would change what klt-render does (mode, profile, namespace, records...).
    return {k: v for k, v in os.environ.items() if not k.startswith("KLT_")}


# Children are spawned by a lean helper interpreter (python -S -I, nothing imported but os and
# time) rather than by this script. On Linux a child's ru_maxrss starts at the peak RSS of the
# process that spawned it (exec records the old address space's high-water mark; posix_spawn's
# vfork child runs in the parent's), so spawned from here every child would report at least
# this script's peak (~19 MB); from the helper, about 8 MB. The helper also times each child
# from spawn to reaping, without the pipe round trip.
SPAWNER = r"""
import os, sys, time
inp, out = sys.stdin.buffer, sys.stdout
W = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
while True:
    line = inp.readline()
    if not line:
        break
    f = line[:-1].decode().split("\0")
    acts = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, f[0], W, 0o644),
            (os.POSIX_SPAWN_OPEN, 2, f[1], W, 0o644)]
    argv = f[2:]
    try:
        t = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=acts)
        _, st, ru = os.wait4(pid, 0)
        wall = time.perf_counter() - t
        out.write("%d %r %d %r\n" % (os.waitstatus_to_exitcode(st), wall, ru.ru_maxrss,
                                    ru.ru_utime + ru.ru_stime))
    except OSError as e:
        out.write("E %s\n" % e)
    out.flush()
"""


class Spawner:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", "-I", "-c", SPAWNER],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=_clean_env(), text=True)

    def spawn(self, argv: list[str], stdout: str, stderr: str) -> tuple[int, float, int, float]:
        """(exit code, wall seconds, ru_maxrss in KiB, CPU seconds) of one run of argv."""
        if any(c in a for a in [stdout, stderr, *argv] for c in "\0\n"):
            raise ValueError(f"NUL or newline in a command: {argv}")
        self.proc.stdin.write("\0".join([stdout, stderr, *argv]) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise CommandFailed("the spawner helper exited")
        if reply.startswith("E "):
            raise CommandFailed(f"cannot run {argv[0]}: {reply[2:].strip()}")
        code, wall, rss, cpu = reply.split()
        return int(code), float(wall), int(rss), float(cpu)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


SPAWN: Spawner | None = None


def run(argv: list[str], stdout: str = os.devnull, stderr: str | None = None) -> Run:
    """Runs argv once (stdin from /dev/null); wall time from spawn to reaping, peak RSS of that
    child from its own wait4 rusage (not RUSAGE_CHILDREN, which mixes all reaped children).
    Raises CommandFailed (with the command's stderr) on a non-zero exit."""
    err_path = stderr or os.path.join(WORK, "stderr.txt")
    code, wall, maxrss, cpu = SPAWN.spawn(argv, stdout, err_path)
    if code != 0:
        raise CommandFailed(
            f"command failed (exit {code}): {' '.join(argv)}\n--- stderr ---\n{_tail(err_path)}"
        )
    return Run(wall, maxrss * 1024, cpu)  # ru_maxrss is in KiB on Linux


def _tail(path: str, limit: int = 20_000) -> str:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if size > limit:
                f.seek(size - limit)
            text = f.read().decode(errors="replace")
        return ("[...]\n" if size > limit else "") + text
    except OSError as e:
        return f"(stderr unavailable: {e})"


def scan_stream(path: str) -> dict[str, int]:
    """Bytes, documents (`---` lines) and top-level kinds of a YAML stream, read line by line
    (the rendered stream is 123 MB at 10,000 apps)."""
    counts = {"bytes": os.path.getsize(path), "docs": 0, "jobs": 0, "configmaps": 0, "kinds": 0}
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b"---"):
                counts["docs"] += 1
            elif line.startswith(b"kind:"):
                counts["kinds"] += 1
                kind = line[5:].strip()
                if kind == b"Job":
                    counts["jobs"] += 1
                elif kind == b"ConfigMap":
                    counts["configmaps"] += 1
    return counts


def count_lines(path: str, needle: bytes) -> int:
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if needle in line:
                n += 1
    return n


def best(runs: list[Run]) -> Run:
    return min(runs, key=lambda r: r.wall)


def rss_baseline() -> int:
    """ru_maxrss of /bin/true spawned the same way: no child can report less (see SPAWNER), so
    figures at this level are upper bounds."""
    return min(run(["/bin/true"]).maxrss for _ in range(3))


# ---------------------------------------------------------------------------------------------
# Report helpers
# ---------------------------------------------------------------------------------------------


def fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.1f} ms"
    return f"{s:.2f} s"


def fmt_mb(b: float | None) -> str:
    return "-" if b is None else f"{b / MB:.1f} MB"


def fmt_x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if j else c.ljust(w)  # noqa: E731
                                   for j, (c, w) in enumerate(zip(cells, widths)))
    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, math.ceil(p / 100 * len(s)) - 1)
    return s[k]


def git_describe() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src",
                                "Cargo.toml", "Cargo.lock"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + (" + uncommitted changes in src/ or Cargo.*" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def stale_sources(binary: Path) -> list[str]:
    """Sources newer than the binary (another engineer may be editing src/ meanwhile)."""
    mtime = binary.stat().st_mtime
    newer = []
    for p in [*REPO.joinpath("src").rglob("*.rs"), REPO / "Cargo.toml", REPO / "Cargo.lock"]:
        try:
            if p.stat().st_mtime > mtime:
                newer.append(str(p.relative_to(REPO)))
        except OSError:
            pass
    return newer


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

WORK = ""  # the temp dir; set in main


@dataclass
class SizeResult:
    repo: Repo
    runs: int
    render: Run
    render_rss: int  # max over the runs
    render_cpu: float  # min over the runs
    floor: Run
    floor_rss: int
    floor_cpu: float
    out: dict[str, int]
    floor_out: dict[str, int]
    warnings: int
    kustomize: Run | None = None
    kustomize_runs: int = 0


def measure_size(n: int, runs: int, binary: str, kubectl: str | None, kustomize_runs_large: int,
                 log) -> SizeResult:
    root = Path(WORK) / f"repo-{n}"
    t0 = time.perf_counter()
    repo = generate(root, n)
    log(f"  generated {n} apps: {repo.files} files, {repo.documents} documents, "
        f"{fmt_mb(repo.bytes)} in {time.perf_counter() - t0:.1f} s")

    # Verification (and warm-up: it also brings the files into the page cache).
    out_path = os.path.join(WORK, "render.out")
    err_path = os.path.join(WORK, "render.err")
    run([binary, "render", str(root)], stdout=out_path, stderr=err_path)
    out = scan_stream(out_path)
    warnings = count_lines(err_path, b"warning[")
    errors = count_lines(err_path, b"error[")
    os.unlink(out_path)
    problems = []
    if out["bytes"] == 0:
        problems.append("the rendered output is empty")
    if out["jobs"] != repo.jobs:
        problems.append(f"{out['jobs']} Jobs rendered, {repo.jobs} expected")
    if errors:
        problems.append(f"{errors} error(s) on stderr")
    if problems:
        raise CommandFailed(f"render of {n} apps: " + "; ".join(problems)
                            + f"\n--- stderr ---\n{_tail(err_path)}")
    floor_path = os.path.join(WORK, "floor.out")
    run([binary, "floor", str(root)], stdout=floor_path)
    floor_out = scan_stream(floor_path)
    os.unlink(floor_path)
    if floor_out["docs"] != repo.documents:
        raise CommandFailed(f"floor of {n} apps re-emitted {floor_out['docs']} documents, "
                            f"{repo.documents} generated")
    log(f"  verified: {out['jobs']} Jobs, {out['configmaps']} ConfigMaps, {out['docs']} objects, "
        f"{fmt_mb(out['bytes'])} rendered; {warnings} warnings on stderr")

    # Timed runs, render and floor interleaved so that drift affects both alike.
    render_runs, floor_runs = [], []
    for r in range(runs):
        render_runs.append(run([binary, "render", str(root)], stderr=err_path))
        floor_runs.append(run([binary, "floor", str(root)]))
        log(f"  run {r + 1}/{runs}: render {fmt_s(render_runs[-1].wall)}, "
            f"floor {fmt_s(floor_runs[-1].wall)}")
    res = SizeResult(
        repo=repo, runs=runs,
        render=best(render_runs), render_rss=max(r.maxrss for r in render_runs),
        render_cpu=min(r.cpu for r in render_runs),
        floor=best(floor_runs), floor_rss=max(r.maxrss for r in floor_runs),
        floor_cpu=min(r.cpu for r in floor_runs),
        out=out, floor_out=floor_out, warnings=warnings,
    )

    if kubectl and n <= KUSTOMIZE_MAX_APPS:
        write_kustomization(repo)
        # kustomize is far slower (minutes per run at 1,000 apps): one run above 100 apps, and
        # the first run is both timed and checked (its output goes to a file, not /dev/null).
        kruns = runs if n <= 100 else kustomize_runs_large
        kpath = os.path.join(WORK, "kustomize.out")
        ks = []
        for r in range(kruns):
            ks.append(run([kubectl, "kustomize", str(root)], stdout=kpath if r == 0 else os.devnull))
            log(f"  kustomize run {r + 1}/{kruns}: {fmt_s(ks[-1].wall)}")
            if r == 0:
                kout = scan_stream(kpath)
                os.unlink(kpath)
                if kout["kinds"] != repo.documents:
                    raise CommandFailed(f"kubectl kustomize of {n} apps wrote {kout['kinds']} "
                                        f"objects, {repo.documents} expected")
        res.kustomize, res.kustomize_runs = best(ks), kruns

    shutil.rmtree(root)
    return res


def main() -> int:
    global WORK, SPAWN
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", help="comma-separated app counts (default 100,1000,10000)")
    ap.add_argument("--quick", action="store_true", help="100 and 1,000 apps only")
    ap.add_argument("--runs", type=int, default=5, help="runs per figure, best kept (default 5)")
    ap.add_argument("--runs-large", type=int, default=3,
                    help="runs at 10,000 apps and above (default 3)")
    ap.add_argument("--startup-runs", type=int, default=50,
                    help="runs of the one-app render (default 50)")
    ap.add_argument("--bin", default=str(DEFAULT_BIN), help="klt-render binary (default: %(default)s)")
    ap.add_argument("--kustomize-runs-large", type=int, default=1,
                    help="kubectl kustomize runs above 100 apps (default 1: minutes each)")
    ap.add_argument("--no-kustomize", action="store_true", help="skip the kubectl kustomize figures")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (repos are removed anyway)")
    args = ap.parse_args()

    if args.sizes:
        try:
            sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
        except ValueError:
            ap.error(f"--sizes: not a list of numbers: {args.sizes}")
        if not sizes or min(sizes) < 1:
            ap.error("--sizes: app counts must be >= 1")
    elif args.quick:
        sizes = [100, 1000]
    else:
        sizes = [100, 1000, 10000]
    if min(args.runs, args.runs_large, args.startup_runs, args.kustomize_runs_large) < 1:
        ap.error("run counts must be >= 1")

    src_bin = Path(args.bin)
    if not src_bin.is_file():
        print(f"render_bench: {src_bin} not found; run `cargo build --release` first",
              file=sys.stderr)
        return 1
    kubectl = None if args.no_kustomize else shutil.which("kubectl")

    WORK = tempfile.mkdtemp(prefix="klt-render-bench-")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    SPAWN = Spawner()
    try:
        # A private copy: a concurrent `cargo build` cannot swap the binary mid-benchmark.
        binary = os.path.join(WORK, "klt-render")
        shutil.copy2(src_bin, binary)
        stale = stale_sources(src_bin)

        header = [
            "klt-render benchmark",
            f"  date      {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
            f"  machine   {os.cpu_count()} cores, {cpu_model()}, {platform.system()} "
            f"{platform.release()}",
            f"  binary    {src_bin} (built {datetime.datetime.fromtimestamp(src_bin.stat().st_mtime):%Y-%m-%d %H:%M}, "
            f"{src_bin.stat().st_size / MIB:.1f} MiB), git {git_describe()}",
        ]
        if stale:
            header.append(f"  WARNING   {len(stale)} source file(s) newer than the binary "
                          f"(e.g. {stale[0]}): rebuild for current figures")
        if kubectl:
            kv = subprocess.run([kubectl, "version", "--client"], capture_output=True,
                                text=True).stdout
            kver = ", ".join(line.strip() for line in kv.splitlines() if line.strip())
            header.append(f"  kubectl   {kver or kubectl}")
        else:
            header.append("  kubectl   not used" if args.no_kustomize else "  kubectl   not found: no kustomize figures")
        header.append(f"  load      {load()} (1, 5, 15 min) at start")
        print("\n".join(header), flush=True)

        baseline_start = rss_baseline()

        # One-app render, process start to exit.
        log(f"one-app render of {EXAMPLE.relative_to(REPO)}: {args.startup_runs} runs")
        for _ in range(3):  # warm-up
            run([binary, "render", str(EXAMPLE)])
        startup = [run([binary, "render", str(EXAMPLE)]).wall for _ in range(args.startup_runs)]
        startup_median = statistics.median(startup)
        startup_p95 = percentile(startup, 95)

        results: dict[int, SizeResult] = {}
        for n in sizes:
            runs = args.runs_large if n >= 10000 else args.runs
            log(f"{n} apps ({runs} runs)")
            results[n] = measure_size(n, runs, binary, kubectl, args.kustomize_runs_large, log)

        baseline_end = rss_baseline()
        load_end = load()
    except CommandFailed as e:
        print(f"\nrender_bench: {e}", file=sys.stderr)
        return 1
    finally:
        SPAWN.close()
        if args.keep:
            print(f"(temp dir kept: {WORK})", file=sys.stderr)
        else:
            shutil.rmtree(WORK, ignore_errors=True)

    # ---- Report -------------------------------------------------------------------------------
    print()
    print("input (generated)")
    print(table(
        ["apps", "files", "documents", "bytes", "expected Jobs"],
        [[f"{n:,}", f"{r.repo.files:,}", f"{r.repo.documents:,}",
          f"{r.repo.bytes:,} ({fmt_mb(r.repo.bytes)})", f"{r.repo.jobs:,}"]
         for n, r in results.items()],
    ))
    print()
    print("render vs floor (wall: best of the runs; CPU: least user+sys of the runs; RSS: highest "
          "peak of the runs)")
    rows = []
    for n, r in results.items():
        rows.append([
            f"{n:,}", str(r.runs), fmt_s(r.render.wall), fmt_s(r.render_cpu),
            f"{r.repo.bytes / MB / r.render.wall:.1f}", fmt_mb(r.render_rss),
            fmt_mb(r.out["bytes"]), f"{r.out['jobs']:,}",
            fmt_s(r.floor.wall), fmt_s(r.floor_cpu), fmt_mb(r.floor_rss),
            fmt_x(r.render.wall / r.floor.wall), fmt_x(r.render_cpu / r.floor_cpu),
        ])
    print(table(["apps", "runs", "render", "CPU", "MB/s", "RSS", "output", "Jobs",
                 "floor", "CPU", "RSS", "render/floor", "(CPU)"], rows))
    krows = [[f"{n:,}", str(r.kustomize_runs), fmt_s(r.kustomize.wall), fmt_mb(r.kustomize.maxrss),
              fmt_s(r.render.wall), fmt_x(r.kustomize.wall / r.render.wall)]
             for n, r in results.items() if r.kustomize]
    if krows:
        print()
        print("kubectl kustomize over the same files (reads and writes them unchanged)")
        print(table(["apps", "runs", "kustomize", "RSS", "render", "kustomize/render"], krows))
    print()
    print(f"one-app render ({EXAMPLE.relative_to(REPO)}), process start to exit, "
          f"{len(startup)} runs: median {startup_median * 1000:.2f} ms, "
          f"p95 {startup_p95 * 1000:.2f} ms, min {min(startup) * 1000:.2f} ms, "
          f"max {max(startup) * 1000:.2f} ms")
    print(f"RSS floor of any child of this script: {fmt_mb(baseline_start)} at start, "
          f"{fmt_mb(baseline_end)} at end (peaks at this level are upper bounds)")
    print(f"load average at the end: {load_end} (1, 5, 15 min) on {os.cpu_count()} cores")
    print(f"stderr of render: {', '.join(f'{r.warnings:,} warnings at {n:,} apps' for n, r in results.items())}")

    # ---- Targets ------------------------------------------------------------------------------
    targets = []  # (target, where, measured, met)

    def target(name: str, where: str, measured: str, met: bool) -> None:
        targets.append([name, where, measured, "MET" if met else "MISSED"])

    for n, r in results.items():
        x = r.render.wall / r.floor.wall
        target(f"render/floor <= {TARGET_RENDER_OVER_FLOOR:g}x", f"{n:,} apps", fmt_x(x),
               x <= TARGET_RENDER_OVER_FLOOR)
    if 100 in results and results[100].kustomize:
        r = results[100]
        x = r.kustomize.wall / r.render.wall
        target(f"kustomize/render >= {TARGET_KUSTOMIZE_OVER_RENDER:g}x", "100 apps", fmt_x(x),
               x >= TARGET_KUSTOMIZE_OVER_RENDER)
    if 1000 in results and 10000 in results:
        g = results[10000].render.wall / results[1000].render.wall
        target(f"growth time(10,000)/time(1,000) <= {TARGET_GROWTH:g}x", "render", fmt_x(g),
               g <= TARGET_GROWTH)
    for n, r in results.items():
        limit = TARGET_RSS_FACTOR * r.repo.bytes + TARGET_RSS_SLACK
        target(f"peak RSS < {TARGET_RSS_FACTOR} x input + 30 MB", f"{n:,} apps",
               f"{fmt_mb(r.render_rss)} (limit {fmt_mb(limit)})", r.render_rss < limit)
    target(f"one-app render median < {TARGET_STARTUP_MS:g} ms", "examples/checkout",
           f"{startup_median * 1000:.2f} ms", startup_median * 1000 < TARGET_STARTUP_MS)
    target(f"one-app render p95 < {TARGET_STARTUP_MS:g} ms", "examples/checkout",
           f"{startup_p95 * 1000:.2f} ms", startup_p95 * 1000 < TARGET_STARTUP_MS)
    print()
    print("targets")
    print(table(["target", "where", "measured", "verdict"], targets))
    missed = sum(1 for t in targets if t[3] == "MISSED")
    print(f"\n{len(targets) - missed} of {len(targets)} targets met"
          + (f", {missed} missed" if missed else "") + " (a benchmark: exit status 0 either way)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
