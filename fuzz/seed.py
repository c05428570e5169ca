#!/usr/bin/env python3
"""Builds the fuzz corpora from the repository's fixtures, deterministically.

    fuzz/seed.py [OUT_DIR]        # default fuzz/corpus; one directory per target

Seeds come from tests/fixtures/**, examples/ and shared/examples/keptn-upstream (found at
$KLT_SHARED or ../shared beside the repository; skipped when absent). Each seed is named by
the SHA-1 of its content (libFuzzer's convention), so the same tree always gives the same
corpus and re-running only adds what changed. The corpora are not committed: the small set of
minimised regressions under fuzz/regressions/ is, and the scripts fuzz both.

The render target's input is one flags byte (options) then files separated by NUL bytes; the
krm_wire target's legacy form is `config NUL stream`. See fuzz/harness/src/targets.rs.
"""

import hashlib
import os
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "fuzz" / "corpus"
SHARED = Path(os.environ.get("KLT_SHARED", REPO.parent / "shared"))
UPSTREAM = SHARED / "examples" / "keptn-upstream"
MAX_SEED = 64 * 1024
TEXT_EXT = (".yaml", ".yml", ".json")

# Render flags (fuzz/harness/src/targets.rs decode_render_input).
HOOKS, KLT09, KLT08, KEEP, RECORDS, NAMESPACE, DEFNS, JSON = 1, 2, 4, 8, 16, 32, 64, 128

corpora: dict[str, dict[str, bytes]] = {}


def add(target: str, data: bytes) -> None:
    if len(data) <= MAX_SEED:
        corpora.setdefault(target, {})[hashlib.sha1(data).hexdigest()] = data


def text_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and p.suffix in TEXT_EXT
    )


def is_expectation(p: Path) -> bool:
    return p.name.startswith("expected") or p.name in ("case.json", "out.yaml")


def flags_from_args(case: Path) -> int:
    args_file = case / "args"
    if not args_file.is_file():
        return 0
    args = shlex.split(args_file.read_text())
    flags = 0
    for i, a in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if a == "--mode" and nxt == "hooks" or a == "--mode=hooks":
            flags |= HOOKS
        elif a in ("--profile", "--profile=klt-0.9", "--profile=klt-0.8"):
            p = nxt if a == "--profile" else a.split("=", 1)[1]
            flags |= {"klt-0.9": KLT09, "klt-0.8": KLT08}.get(p, 0)
        elif a == "--keep-keptn":
            flags |= KEEP
        elif a == "--records":
            flags |= RECORDS
        elif a in ("-n", "--namespace") or a.startswith("--namespace="):
            flags |= NAMESPACE
        elif a == "--definition-namespace" or a.startswith("--definition-namespace="):
            flags |= DEFNS
    return flags


def render_seed(flags: int, files: list[bytes]) -> bytes:
    return bytes([flags]) + b"\0".join(files)


def split_docs(data: bytes) -> list[bytes]:
    docs, cur = [], []
    for line in data.splitlines(keepends=True):
        if line.rstrip() == b"---" or line.startswith(b"--- "):
            docs.append(b"".join(cur))
            cur = []
        else:
            cur.append(line)
    docs.append(b"".join(cur))
    return [d for d in docs if d.strip()]


def input_set(files: list[Path], flags: int) -> None:
    texts = [f.read_bytes() for f in files]
    if not texts:
        return
    any_json = any(f.suffix == ".json" for f in files)
    base = flags | (JSON if any_json else 0)
    add("render", render_seed(base, texts))
    # The same files under the other mode and a namespace, which take other paths.
    add("render", render_seed(base ^ HOOKS, texts))
    add("render", render_seed((base | NAMESPACE | DEFNS) & ~RECORDS, texts))


def main() -> None:
    all_files = text_files(REPO / "tests" / "fixtures") + text_files(REPO / "examples")
    all_files += text_files(UPSTREAM)

    for f in all_files:
        data = f.read_bytes()
        for t in ("yaml_reader", "model", "gojson"):
            add(t, data)
        for doc in split_docs(data) if f.suffix != ".json" else [data]:
            add("krm_config", doc)
            add("model", doc)
        if f.suffix == ".json":
            add("krm_wire", data)

    # Render: one seed per fixture case (its inputs, its options) and per example directory.
    for kind in ("render", "check", "cmp", "run"):
        root = REPO / "tests" / "fixtures" / kind
        for case in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            inputs = [f for f in text_files(case) if not is_expectation(f)]
            input_set(inputs, flags_from_args(case))
            for f in inputs:
                add("render", render_seed(flags_from_args(case), [f.read_bytes()]))
    for d in sorted(p for p in (REPO / "examples").iterdir() if p.is_dir()):
        input_set(text_files(d), 0)
    input_set(text_files(UPSTREAM), KLT09)

    # KRM: ResourceLists as written, and the kustomize fixtures as legacy plugin runs.
    for f in text_files(REPO / "tests" / "fixtures" / "krm" / "resourcelist"):
        add("krm_wire", f.read_bytes())
    for d in sorted({f.parent for f in text_files(REPO / "tests" / "fixtures" / "krm" / "kustomize")}):
        config = d / "klt-render.yaml"
        resources = [
            f.read_bytes()
            for f in text_files(d)
            if f.parent == d and f.name not in ("klt-render.yaml", "kustomization.yaml")
        ]
        if config.is_file():
            add("krm_config", config.read_bytes())
            add("krm_wire", config.read_bytes() + b"\0" + b"\n---\n".join(resources))

    # Hand-written seeds for what no fixture spells out.
    add("krm_config", b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  mode: hooks\n  profile: klt-0.9\n")
    add("krm_config", b'{"apiVersion":"klt-render.dev/v1alpha1","kind":"KltRender","spec":{"records":true,"mode":"hooks"}}')
    add("gojson", "<a href=\"x\">&</a>\b\f\x01\u2028\u2029\u00fc\t\nk=v\n".encode())
    add("gojson", b'{"b":[1,2.5,-0,1e300,"<&>"],"a":{"z":null,"y":true}}')

    OUT.mkdir(parents=True, exist_ok=True)
    for target, seeds in sorted(corpora.items()):
        d = OUT / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in sorted(seeds.items()):
            p = d / name
            if not p.exists():
                p.write_bytes(data)
        print(f"{target}: {len(seeds)} seeds in {d}")


if __name__ == "__main__":
    main()
