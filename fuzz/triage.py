#!/usr/bin/env python3
"""Groups, minimises and describes the failing inputs a campaign left in fuzz/artifacts/.

    fuzz/triage.py [--minimize] [--save] [TARGET...]

Each artifact is replayed through its target's libFuzzer binary (a single input, with the
campaign's limits) and grouped by what went wrong: the panic location and message (numbers
blanked), or the memory bound, a timeout, an OOM. Per group it prints the count, the smallest
input (escaped), and the klt-render frames of the backtrace. --minimize runs libFuzzer's crash
minimiser (what `cargo fuzz tmin` runs) on the smallest input of each group; --save writes the
result to fuzz/regressions/<target>/<class>-<sha1[:12]>. Needs the binaries fuzz/run-campaign.sh
built (KLT_FUZZ_TARGET_DIR as for it).
"""

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("KLT_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "klt-render"))
TARGET_DIR = Path(os.environ.get("KLT_FUZZ_TARGET_DIR", CACHE / "fuzz-target"))
LIMITS = ["-timeout=10", "-rss_limit_mb=2048"]


def binary(target: str) -> Path:
    return TARGET_DIR / "x86_64-unknown-linux-gnu" / "release" / target


def replay(target: str, path: Path) -> str:
    env = dict(os.environ, RUST_BACKTRACE="1")
    try:
        p = subprocess.run(
            [str(binary(target)), *LIMITS, str(path)],
            capture_output=True, text=True, errors="replace", timeout=60, env=env,
        )
        return p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        return "ERROR: replay took over 60 s (timeout)"


def signature(log: str) -> tuple[str, str]:
    """(class, key) of a failure log."""
    if "klt-fuzz: memory bound exceeded" in log:
        cls = "memory"
    elif "ERROR: libFuzzer: timeout" in log or "(timeout)" in log:
        cls = "timeout"
    elif "out-of-memory" in log or "memory allocation of" in log:
        cls = "oom"
    elif "panicked at" in log:
        cls = "panic"
    elif "deadly signal" in log:
        cls = "signal"
    else:
        return ("pass", "replays without failure")
    m = re.search(r"panicked at ([^\n]+?):\d+:\d+:\n([^\n]*)", log)
    if m and cls == "panic":
        msg = re.sub(r"\d+", "N", m.group(2))[:160]
        return (cls, f"{m.group(1)}: {msg}")
    # Memory, timeouts: the innermost klt-render frame says where the time or bytes went.
    frames = klt_frames(log)
    return (cls, frames[0] if frames else "")


def klt_frames(log: str) -> list[str]:
    """`function (file:line)` for backtrace frames in klt-render's own code."""
    out = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*\d+: (klt_render::\S+)", line)
        if not m:
            m = re.match(r"\s*#\d+ 0x[0-9a-f]+ in (klt_render::\S+)", line)
        if m:
            fn = re.sub(r"::h[0-9a-f]{16}$", "", m.group(1))
            where = ""
            if i + 1 < len(lines):
                w = re.search(r"at (.*?/src/[^\s]+)", lines[i + 1]) or re.search(r"(/src/[^\s]+)", line)
                if w:
                    where = re.sub(r".*?/(src/)", r"\1", w.group(1))
            out.append(f"{fn} ({where})" if where else fn)
    return out


def escaped(data: bytes, limit: int = 600) -> str:
    s = data[:limit].decode("utf-8", "backslashreplace").encode("unicode_escape").decode()
    return s + ("..." if len(data) > limit else "")


def minimize(target: str, path: Path, cls: str) -> Path:
    out = path.with_name(path.name + ".min")
    cmd = [str(binary(target)), *LIMITS, "-minimize_crash=1", "-max_total_time=60",
           f"-exact_artifact_path={out}", str(path)]
    if cls == "timeout":
        cmd.insert(1, "-timeout=3")
    subprocess.run(cmd, capture_output=True, timeout=180)
    return out if out.is_file() and out.stat().st_size > 0 else path


def main() -> None:
    args = sys.argv[1:]
    do_min = "--minimize" in args
    save = "--save" in args
    targets = [a for a in args if not a.startswith("--")] or sorted(
        p.name for p in (FUZZ / "artifacts").iterdir() if p.is_dir()
    )
    for target in targets:
        arts = sorted(p for p in (FUZZ / "artifacts" / target).glob("*") if p.is_file() and not p.name.endswith(".min"))
        if not arts:
            continue
        groups: dict[tuple[str, str], list[tuple[Path, str]]] = {}
        for a in arts:
            log = replay(target, a)
            groups.setdefault(signature(log), []).append((a, log))
        print(f"=== {target}: {len(arts)} artifacts, {len(groups)} groups")
        for (cls, key), items in sorted(groups.items()):
            items.sort(key=lambda x: x[0].stat().st_size)
            path, log = items[0]
            print(f"--- [{cls}] {key}  ({len(items)} inputs; smallest {path.name}, {path.stat().st_size} B)")
            if cls == "pass":
                continue
            if do_min:
                path = minimize(target, path, cls)
                log = replay(target, path)
            data = path.read_bytes()
            print(f"    input ({len(data)} B): {escaped(data)}")
            for line in log.splitlines():
                if "klt-fuzz: memory bound" in line or "panicked at" in line:
                    print(f"    {line.strip()[:300]}")
            m = re.search(r"panicked at [^\n]*\n([^\n]*)", log)
            if m:
                print(f"    message: {m.group(1)[:300]}")
            for f in klt_frames(log)[:6]:
                print(f"      at {f}")
            if save:
                dest = FUZZ / "regressions" / target / f"{cls}-{hashlib.sha1(data).hexdigest()[:12]}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                print(f"    saved {dest.relative_to(FUZZ.parent)}")


if __name__ == "__main__":
    main()
