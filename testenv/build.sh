#!/usr/bin/env bash
# Build kube-testenv (kube-apiserver + embedded etcd) into a git-ignored cache:
#   $REPO/.cache/testenv/<key>/kube-testenv
# and print that path (the only line on stdout). Reuses a cached binary.
#
# <key> is the sha256 of go.sum together with go.mod, the *.go files, this script and
# `go version`, so any change of dependencies, code, build flags or toolchain
# gives a new binary. Heavy work runs under `nice -n 19` with at most
# TESTENV_GO_PARALLEL (default 2) parallel compile jobs.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache_root="${TESTENV_CACHE_DIR:-$repo/.cache/testenv}"

# Exit 3: the build is impossible on this machine (tests skip on it, as for tests/argocd-cmp).
command -v go >/dev/null || { echo "build.sh: cannot build kube-testenv here: go not found in PATH" >&2; exit 3; }
goversion="$(cd "$here" && go version)"

key="$(
  cd "$here"
  { sha256sum go.sum go.mod *.go build.sh; echo "$goversion"; } | sha256sum | cut -c1-16
)"
out_dir="$cache_root/$key"
bin="$out_dir/kube-testenv"

if [ -x "$bin" ]; then
  echo "build.sh: reusing $bin" >&2
  echo "$bin"
  exit 0
fi

kube_version="$(sed -n 's#^[[:space:]]*k8s\.io/kubernetes[[:space:]]\{1,\}\(v[0-9][^[:space:]]*\).*$#\1#p' "$here/go.mod" | head -n1)"
[ -n "$kube_version" ] || { echo "build.sh: k8s.io/kubernetes not found in go.mod" >&2; exit 1; }
kube_minor="$(echo "$kube_version" | cut -d. -f2)"
# What a release build stamps in, so /version reports the real version.
ldflags="-s -w"
ldflags="$ldflags -X k8s.io/component-base/version.gitVersion=$kube_version"
ldflags="$ldflags -X k8s.io/component-base/version.gitMajor=1"
ldflags="$ldflags -X k8s.io/component-base/version.gitMinor=$kube_minor"
ldflags="$ldflags -X k8s.io/component-base/version.gitTreeState=clean"

mkdir -p "$out_dir"
tmp="$(mktemp "$out_dir/.kube-testenv.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

echo "build.sh: building kube-testenv ($kube_version) into $out_dir (cold: ~5-7 min on 2 cores)" >&2
start=$(date +%s)
(
  cd "$here"
  # -mod=readonly: never rewrite go.mod/go.sum during a build.
  GOFLAGS="-mod=readonly -buildvcs=false -p=${TESTENV_GO_PARALLEL:-2}" CGO_ENABLED=0 \
    nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$tmp" .
)
chmod 0755 "$tmp"
mv -f "$tmp" "$bin"
trap - EXIT
echo "build.sh: built $bin in $(( $(date +%s) - start ))s ($(du -h "$bin" | cut -f1))" >&2
echo "$bin"
