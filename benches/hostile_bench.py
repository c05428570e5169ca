#!/usr/bin/env python3
"""Time and peak memory of klt-render on hostile input, as a function of the input's size.

    cargo build --release && python3 benches/hostile_bench.py            # 16 KiB .. 16 MiB
    python3 benches/hostile_bench.py --max-mib 4 --bin target/release/klt-render

For every family of input that once cost more than its size (alias bombs, merge-key bombs, deep
nesting through aliases, maps of many keys, many anchors, many empty documents, long unknown
field names for did-you-mean, many unknown task names and many contexts of missing apps (one
did-you-mean each, among all the names), many definitions that read SECURE_DATA without a
secret, many findings in `check`'s human format, a huge honest ConfigMap),
it writes inputs of growing size and runs `render` and `check` on each, printing wall time, peak
RSS (from wait4, this process only) and RSS per input byte. Bounded means: time and memory grow
at most linearly with the input, whatever its shape. It prints figures, not a verdict (exit 0
unless a command crashes or hangs past the timeout, which it reports).

Standard library only.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_BIN = REPO / "target" / "release" / "klt-render"
TIMEOUT = 60
GNU_TIME = "/usr/bin/time"  # Debian package `time`

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n"
TASK = (
    "apiVersion: lifecycle.keptn.sh/v1\nkind: KeptnTaskDefinition\nmetadata:\n  name: {name}\n"
    "spec:\n  deno:\n    inline:\n      code: console.log(1)\n"
)


def laughs(i: int) -> str:
    lines = [f"  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for lvl in range(1, 9):
        lines.append(f"  a{lvl}: &a{lvl} [" + ", ".join([f"*a{lvl - 1}"] * 9) + "]")
    return "---\n" + CM.format(name=f"bomb{i}") + "\n".join(lines) + "\n"


def small_bomb(i: int) -> str:
    """A bomb just under the per-document budget: only the input-wide budget stops many."""
    lines = [f"  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines.append("  a1: &a1 [" + ", ".join(["*a0"] * 9) + "]")
    lines.append("  b: [*a1, *a1, *a1, *a1, *a1]")
    return "---\n" + CM.format(name=f"bomb{i}") + "\n".join(lines) + "\n"


def merge_bomb(i: int) -> str:
    lines = ["  m0: &m0 {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7}"]
    for lvl in range(1, 10):
        refs = ", ".join([f"*m{lvl - 1}"] * 8)
        lines.append(f"  m{lvl}: &m{lvl} {{<<: [{refs}], v{lvl}: [{refs}]}}")
    return "---\n" + CM.format(name=f"merge{i}").replace("data:", "x:") + "\n".join(lines) + "\n"


def deep_alias(i: int) -> str:
    nest = lambda inner: "[" * 250 + inner + "]" * 250  # noqa: E731
    lines = [f"  a0: &a0 {nest('1')}"] + [f"  a{k}: &a{k} {nest(f'*a{k - 1}')}" for k in range(1, 8)]
    return "---\n" + CM.format(name=f"deep{i}").replace("data:", "x:") + "\n".join(lines) + "\n"


def unknown_task(i: int) -> str:
    """A definition, and an app whose context lists a typo of its name: each finding's
    did-you-mean is compared with every definition."""
    return (
        "---\n" + TASK.format(name=f"def{i}") + "---\napiVersion: lifecycle.keptn.sh/v1beta1\nkind: KeptnApp\n"
        f"metadata:\n  name: app{i}\nspec:\n  version: '1'\n  workloads: []\n"
        "---\napiVersion: lifecycle.keptn.sh/v1\nkind: KeptnAppContext\n"
        f"metadata:\n  name: app{i}\nspec:\n  preDeploymentTasks: [xdef{i}]\n"
    )


def orphan_context(i: int) -> str:
    """A KeptnApp, and a context for an app one letter off that has none: each context's
    did-you-mean is compared with every app."""
    return (
        "---\napiVersion: lifecycle.keptn.sh/v1beta1\nkind: KeptnApp\n"
        f"metadata:\n  name: app{i}\nspec:\n  version: '1'\n  workloads: []\n"
        "---\napiVersion: lifecycle.keptn.sh/v1\nkind: KeptnAppContext\n"
        f"metadata:\n  name: apq{i}\nspec:\n  preDeploymentTasks: [t]\n"
    )


def secret_read(i: int) -> str:
    """A definition whose code reads SECURE_DATA with no secret passed: `check` asks of each
    one whether any other definition passes it a secret by functionRef."""
    return (
        "---\napiVersion: lifecycle.keptn.sh/v1\nkind: KeptnTaskDefinition\n"
        f"metadata:\n  name: d{i}\nspec:\n  deno:\n    inline:\n"
        '      code: Deno.env.get("SECURE_DATA")\n'
    )


def repeat(unit, size: int) -> str:
    parts, total, i = [], 0, 0
    while total < size:
        p = unit(i)
        parts.append(p)
        total += len(p)
        i += 1
    return "".join(parts)


def one_map(size: int, line) -> str:
    head = CM.format(name="big")
    return head + repeat(line, size - len(head))


FAMILIES = {
    "alias bombs": lambda n: repeat(laughs, n),
    "bombs under budget": lambda n: repeat(small_bomb, n),
    "merge-key bombs": lambda n: repeat(merge_bomb, n),
    "aliases past depth": lambda n: repeat(deep_alias, n),
    "one map, many keys": lambda n: one_map(n, lambda i: f"  k{i}: v\n"),
    "many anchors": lambda n: one_map(n, lambda i: f"  k{i}: &a{i} v\n"),
    "same anchor name": lambda n: one_map(n, lambda i: f"  k{i}: &a v\n"),
    "empty documents": lambda n: "---\n" * (n // 4),
    "long unknown fields": lambda n: repeat(
        lambda i: "---\n" + TASK.format(name=f"t{i}") + "  " + "x" * 4000 + f"{i}: 1\n", n
    ),
    "many findings": lambda n: repeat(
        lambda i: "---\n" + TASK.format(name=f"t{i}") + f"  secureParamters: {{secret: s{i}}}\n", n
    ),
    "unknown task names": lambda n: repeat(unknown_task, n),
    "contexts of apps that are not there": lambda n: repeat(orphan_context, n),
    "secret reads without a secret": lambda n: repeat(secret_read, n),
    "honest big ConfigMap": lambda n: one_map(n, lambda i: f"  key-{i}: \"{'v' * 60}\"\n"),
}


def run(cmd: list[str], cwd: pathlib.Path) -> tuple[int, float, int]:
    """(exit code or -1 on timeout, seconds, peak RSS in KiB) of exactly this process.

    Peak RSS comes from GNU time: Linux carries a process' high-water mark across fork and
    exec, so a child forked from this (large) Python process would report Python's RSS.
    """
    fd, name = tempfile.mkstemp(prefix="klt-rss-")
    os.close(fd)
    report = pathlib.Path(name)
    wrapped = [GNU_TIME, "-f", "%M", "-o", str(report), *cmd]
    with open(os.devnull, "wb") as null:
        start = time.monotonic()
        try:
            proc = subprocess.run(wrapped, cwd=cwd, stdin=subprocess.DEVNULL, stdout=null, stderr=null, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            report.unlink()
            return -1, TIMEOUT, 0
        secs = time.monotonic() - start
    lines = report.read_text().split()
    report.unlink()
    rss = int(lines[-1])
    # GNU time prefixes "Command exited with non-zero status N" on failure.
    return proc.returncode, secs, rss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(DEFAULT_BIN))
    ap.add_argument("--max-mib", type=int, default=16)
    ap.add_argument("--families", default="", help="comma-separated subset")
    args = ap.parse_args()
    sizes = []
    s = 16 * 1024
    while s <= args.max_mib * 1024 * 1024:
        sizes.append(s)
        s *= 4
    chosen = [f for f in FAMILIES if not args.families or f in args.families.split(",")]
    _, _, base = run([args.bin, "--version"], REPO)
    print(f"binary {args.bin}; baseline RSS {base / 1024:.1f} MiB; timeout {TIMEOUT} s")
    print(f"{'family':22} {'input':>9} {'cmd':6} {'exit':>4} {'time':>8} {'peak RSS':>10} {'extra RSS/byte':>14}")
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        for fam in chosen:
            for size in sizes:
                text = FAMILIES[fam](size)
                f = d / "input.yaml"
                f.write_text(text)
                for cmd in ("render", "check"):
                    code, secs, rss = run([args.bin, cmd, str(f)], d)
                    per_byte = max(rss - base, 0) * 1024 / len(text)
                    if code < 0 or code > 2:
                        bad += 1
                    print(
                        f"{fam:22} {len(text) / 1024:8.0f}K {cmd:6} {code:>4} {secs * 1000:7.0f}ms"
                        f" {rss / 1024:8.1f}Mi {per_byte:14.2f}"
                    )
                sys.stdout.flush()
    if bad:
        print(f"{bad} run(s) crashed or timed out", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
