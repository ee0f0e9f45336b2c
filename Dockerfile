# syntax=docker/dockerfile:1
# One image holding every calanque binary (docs/pbxcluster.md: spec.image); the chart and the
# operator choose which binary a container runs.
#
#   docker build -t ghcr.io/calanque/calanque:0.1.0 .
#
# Builder: the pinned toolchain (rust-toolchain.toml, 1.95) on Debian 12, protoc for the
# protobuf/gRPC code generated at build time (crates/proto/build.rs). Runtime: distroless
# cc-debian12 (glibc, libgcc, CA certificates; no shell, no package manager) as the `nonroot`
# user (65532), the uid the chart's securityContext runs as.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The toolchain file first, in its own layer: rustup installs what it names (channel and
# components) once, not on every source change.
COPY rust-toolchain.toml ./
RUN rustup toolchain install && rustc --version && cargo --version
COPY . .
# The registry and git caches persist between builds (BuildKit cache mounts); target/ too, so
# the binaries are copied out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
      --bin calanque \
      --bin calanque-sip-edge \
      --bin calanque-call-control \
      --bin calanque-media \
      --bin calanque-directory \
      --bin calanque-operator \
      --bin calanque-failover \
 && mkdir -p /out \
 && cp target/release/calanque \
       target/release/calanque-sip-edge \
       target/release/calanque-call-control \
       target/release/calanque-media \
       target/release/calanque-directory \
       target/release/calanque-operator \
       target/release/calanque-failover \
       /out/

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="calanque" \
      org.opencontainers.image.description="calanque IP-PBX: SIP edge, call-control, media relay, directory, operator and failover controller" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /out/ /usr/local/bin/
# SIP (UDP and TCP) on the edges; metrics, /healthz and /readyz on every service.
EXPOSE 5060/udp 5060/tcp 9090
ENV CALANQUE_LOG_FORMAT=json \
    CALANQUE_TELEMETRY_LISTEN=0.0.0.0:9090
# distroless' nonroot user, by number so that runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/calanque"]
CMD ["--help"]
