#!/usr/bin/env python3
"""Benchmark of the Argo CD plugin command (issue: CMP): `klt-render generate` over ONE app
directory holding N KeptnApps (default 1,000), run the way argocd-cmp-server runs it (working
directory = the app dir, ARGOCD_* environment, stdout captured). Prints wall time from process
start to exit and the child's peak RSS; it is a benchmark, not a test: it never fails on a
figure, only when the command fails.

    cargo build --release && python3 benches/generate_bench.py [--apps 1000] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def app_files(i: int) -> str:
    name = f"app-{i:05d}"
    return f"""apiVersion: lifecycle.keptn.sh/v1
kind: KeptnApp
metadata:
  name: {name}
spec:
  version: "1.{i % 97}.0"
  revision: {1 + i % 3}
  workloads:
    - name: {name}-web
      version: "2.{i % 89}.1"
---
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnAppContext
metadata:
  name: {name}
spec:
  preDeploymentTasks: [{name}-gate]
  postDeploymentTasks: [{name}-notify]
  metadata:
    team: team-{i % 13}
---
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnTaskDefinition
metadata:
  name: {name}-gate
spec:
  timeout: 2m
  deno:
    inline:
      code: |
        const data = JSON.parse(Deno.env.get("DATA") ?? "{{}}");
        const ctx = JSON.parse(Deno.env.get("KEPTN_CONTEXT") ?? "{{}}");
        if (data.threshold !== "{i}") Deno.exit(1);
        console.log(`gate for ${{ctx.appName}} ${{ctx.appVersion}} passed`);
    parameters:
      map:
        threshold: "{i}"
---
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnTaskDefinition
metadata:
  name: {name}-notify
spec:
  python:
    httpRef:
      url: https://tasks.example.invalid/notify.py
    parameters:
      map:
        channel: "#team-{i % 13}"
    secureParameters:
      secret: notify-token
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}-web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}-web}}
  template:
    metadata:
      labels:
        app: {name}-web
        app.kubernetes.io/name: {name}-web
        app.kubernetes.io/part-of: {name}
        app.kubernetes.io/version: "2.{i % 89}.1"
      annotations:
        keptn.sh/post-deployment-tasks: {name}-gate
    spec:
      containers:
        - name: web
          image: ghcr.io/example/web:2.{i % 89}.1
          ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata:
  name: {name}-web
spec:
  selector: {{app: {name}-web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def run_once(binary: pathlib.Path, cwd: pathlib.Path, env: dict) -> tuple[float, int, int]:
    start = time.perf_counter()
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        os.chdir(cwd)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        os.execve(str(binary), [str(binary), "generate"], env)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        err.seek(0)
        sys.exit(f"klt-render generate exited {code}: {err.read().decode()[:2000]}")
    out.seek(0, 2)
    return elapsed, usage.ru_maxrss * 1024, out.tell()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--apps", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--binary", default=str(REPO / "target" / "release" / "klt-render"))
    args = ap.parse_args()
    binary = pathlib.Path(args.binary)
    if not binary.is_file():
        sys.exit(f"{binary} missing: run `cargo build --release` first")
    with tempfile.TemporaryDirectory(prefix="klt-gen-bench-") as tmp:
        repo = pathlib.Path(tmp)
        app_dir = repo / "apps" / "fleet"
        app_dir.mkdir(parents=True)
        (app_dir / "secret-note.yaml").write_text(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: notify-token\ntype: Opaque\nstringData:\n  SECURE_DATA: x\n"
        )
        for i in range(args.apps):
            (app_dir / f"app-{i:05d}.yaml").write_text(app_files(i))
        size = sum(p.stat().st_size for p in app_dir.iterdir())
        env = {
            "PATH": "/usr/bin:/bin",
            "ARGOCD_APP_NAME": "fleet",
            "ARGOCD_APP_NAMESPACE": "fleet",
            "ARGOCD_APP_SOURCE_PATH": "apps/fleet",
            "ARGOCD_APP_PARAMETERS": "null",
            "ARGOCD_APP_REVISION": "0" * 40,
        }
        results = [run_once(binary, app_dir, env) for _ in range(args.runs)]
        times = sorted(r[0] for r in results)
        rss = max(r[1] for r in results)
        out_bytes = results[0][2]
        print(f"klt-render generate: {args.apps} KeptnApps in one app directory, "
              f"{args.apps + 1} files, {size / 1e6:.2f} MB in, {out_bytes / 1e6:.2f} MB out")
        print(f"  wall (process start to exit), {args.runs} runs: min {times[0] * 1000:.0f} ms, "
              f"median {statistics.median(times) * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")
        print(f"  throughput: {size / 1e6 / statistics.median(times):.1f} MB/s")
        print(f"  peak RSS: {rss / 1e6:.1f} MB ({rss / size:.2f}x the input)")
        print(f"  Argo CD's default repo-server timeout is 60 s: "
              f"{statistics.median(times) / 60 * 100:.2f}% of it")


if __name__ == "__main__":
    main()
