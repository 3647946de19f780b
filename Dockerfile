# syntax=docker/dockerfile:1
#
# One image for the whole workspace: the `storefront` CLI and every service
# binary, for compose.yaml's `full` profile (docker compose --profile full up)
# and the Kubernetes manifests in deploy/ (the container's command picks the
# binary).
# The default way to run the lab is still the native fleet (`storefront up`),
# which needs no Docker at all.
#
#   docker build -t storefront:local .
#   docker run --rm storefront:local storefront --help
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

# The workspace is edition 2024; Cargo.toml's rust-version is the floor, this
# is the toolchain the lab is developed with.
ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# The whole workspace at once: with target/ in a cache mount, cargo's own
# incremental build is what saves time here, not Docker's layer cache, so a
# separate "dependencies only" layer would buy little.
COPY . .

# The registry, git checkouts and target/ live in cache mounts so a rebuild
# after a source change recompiles only the workspace crates. A cache mount is
# not part of the image, so the binaries have to be copied out of target/ in
# this same RUN; `install` fails if one is missing, so a renamed binary breaks
# the build instead of the container.
#
# Adding a service: one more `target/release/<bin>` line below.
RUN --mount=type=cache,id=storefront-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=storefront-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=storefront-target,target=/src/target,sharing=locked \
    cargo build --release --workspace --locked \
 && mkdir -p /out \
 && install -m 0755 -t /out \
        target/release/storefront \
        target/release/catalog \
        target/release/claims \
        target/release/bff \
        target/release/identity \
        target/release/payments \
        target/release/checkout

# ---------------------------------------------------------------------------
# Same Debian release as the builder, so the binaries find the glibc they were
# linked against.
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to anything outside the compose network.
# curl: the services' compose healthcheck (GET /ready).
# Unpinned on purpose: bookworm's point releases replace these versions, so a
# pin would only break the build after the next security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

# A fixed, non-root uid/gid (USER names it by number, so a runtime that
# insists on a non-root user can check it without reading /etc/passwd).
RUN groupadd --system --gid 10001 storefront \
 && useradd --system --uid 10001 --gid storefront \
        --home-dir /app --no-create-home --shell /usr/sbin/nologin storefront

# On PATH, so compose's `command:` is just the binary's name. `storefront`
# finds the service binaries beside itself.
COPY --from=build /out/ /usr/local/bin/

WORKDIR /app
COPY profiles/ /app/profiles/
COPY migrations/ /app/migrations/

# The CLI looks for the project as a directory with profiles/ beside a
# Cargo.toml; the image has no Cargo.toml, so name the root outright. Its
# state directory (default <root>/.storefront) must be writable by the
# non-root user.
ENV STOREFRONT_ROOT=/app
RUN mkdir -p /app/.storefront && chown storefront:storefront /app/.storefront

USER 10001:10001

# Services bind BIND_ADDR (compose sets 0.0.0.0:8080).
EXPOSE 8080

# compose.yaml always names the command (`storefront bootstrap …`, `catalog`);
# on its own the image just explains itself.
CMD ["storefront", "--help"]
