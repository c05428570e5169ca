# klt-render as an Argo CD config-management plugin sidecar (see deploy/argocd/).
#
# The image holds only a static `klt-render` and plugin.yaml; the sidecar's entrypoint,
# /var/run/argocd/argocd-cmp-server, comes from the repo-server pod's `var-files` volume
# (deploy/argocd/ sets `command:`). No shell, no libc, no CA certificates: klt-render reads
# the app directory and writes YAML to stdout, nothing else.
#
#   docker build -t registry.example.com/klt-render:0.1.0 .          # default: build from source
#   buildah bud --target prebuilt -t klt-render:dev .                 # from a binary built on the host
#
# Stages:
#   build     official Rust image; static binary (glibc, crt-static) for the build machine's arch
#   prebuilt  the same final image from an already-built static binary in the build context
#             (no network, no Rust image); tests/image/build-and-run.sh uses it
#   image     (default, last) FROM scratch with the binary of `build`
#
# `prebuilt` and `image` must stay identical apart from where the binary comes from
# (tests/integration/test_image.py compares them); tests/image/build-and-run.sh builds
# `prebuilt` and checks its config, files and renders.

ARG RUST_VERSION=1.95

# ---- build ----------------------------------------------------------------------------------
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# crt-static on the gnu target gives a fully static (static-pie) binary without a musl
# toolchain; klt-render uses no NSS/DNS/dlopen, the parts of glibc that need shared objects.
ENV RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN set -eux; \
    triple="$(uname -m)-unknown-linux-gnu"; \
    cargo build --locked --release --target "$triple" --bin klt-render; \
    install -D -m 0755 "target/$triple/release/klt-render" /out/klt-render; \
    /out/klt-render --version; \
    if readelf -d /out/klt-render | grep -q NEEDED; then echo "klt-render is not static" >&2; exit 1; fi

# ---- prebuilt -------------------------------------------------------------------------------
# BINARY: path of a static klt-render inside the build context (must not be excluded by
# .dockerignore). Build it first, e.g.
#   RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=symbols \
#     CARGO_TARGET_DIR=target/static cargo build --locked --release \
#     --target x86_64-unknown-linux-gnu --bin klt-render
FROM scratch AS prebuilt
ARG BINARY=target/static/x86_64-unknown-linux-gnu/release/klt-render
COPY --chmod=0755 ${BINARY} /usr/local/bin/klt-render
COPY --chmod=0644 plugin.yaml /home/argocd/cmp-server/config/plugin.yaml
# User names for 999 (Argo CD's sidecar) and `nobody` (kustomize runs KRM containers with
# `--user nobody`, which needs an /etc/passwd entry).
COPY --chmod=0644 deploy/image/passwd /etc/passwd
COPY --chmod=0644 deploy/image/group /etc/group
# argocd-cmp-server finds `klt-render` (plugin.yaml's generate command) through PATH.
ENV PATH=/usr/local/bin
LABEL org.opencontainers.image.title="klt-render" \
      org.opencontainers.image.description="Argo CD config-management plugin: Keptn tasks as plain Kubernetes Jobs" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 999:999
ENTRYPOINT ["/usr/local/bin/klt-render"]
# With no arguments the image is a KRM function (kustomize runs it that way); the Argo CD
# sidecar overrides the command with argocd-cmp-server.
CMD ["krm"]

# ---- image (default) ------------------------------------------------------------------------
FROM scratch AS image
COPY --from=build --chmod=0755 /out/klt-render /usr/local/bin/klt-render
COPY --chmod=0644 plugin.yaml /home/argocd/cmp-server/config/plugin.yaml
# User names for 999 (Argo CD's sidecar) and `nobody` (kustomize runs KRM containers with
# `--user nobody`, which needs an /etc/passwd entry).
COPY --chmod=0644 deploy/image/passwd /etc/passwd
COPY --chmod=0644 deploy/image/group /etc/group
ENV PATH=/usr/local/bin
LABEL org.opencontainers.image.title="klt-render" \
      org.opencontainers.image.description="Argo CD config-management plugin: Keptn tasks as plain Kubernetes Jobs" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 999:999
ENTRYPOINT ["/usr/local/bin/klt-render"]
# With no arguments the image is a KRM function (kustomize runs it that way); the Argo CD
# sidecar overrides the command with argocd-cmp-server.
CMD ["krm"]
