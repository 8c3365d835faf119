# cachegate: build with the pinned toolchain, run on a slim Debian as a non-root user.
#   docker build -t cachegate .
#   podman build --format docker -t cachegate .   (podman's default OCI format drops HEALTHCHECK)
#   docker run -p 8080:8080 -e REDIS_HOST=... -e CACHE_AUTH_TOKENS=... cachegate

# ---- builder ----------------------------------------------------------------------------------
# Keep the tag >= rust-version in Cargo.toml (tests/deployment.rs checks it).
FROM rust:1.95-bookworm AS builder
WORKDIR /build

# Dependencies first, in their own layer: build them against stub sources, so this layer is reused
# until Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The real sources (and the checked-in OpenAPI document, if any: the wildcard lets the COPY match
# nothing with BuildKit). Touch them so cargo rebuilds the crate over the stub's artifacts.
COPY src ./src
COPY openapi* ./openapi/
RUN find src -type f -exec touch {} + \
    && cargo build --release --locked

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 cachegate \
    && useradd --system --uid 10001 --gid cachegate --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin cachegate

COPY --from=builder /build/target/release/cachegate /usr/local/bin/cachegate

USER cachegate
ENV CACHE_HOST=0.0.0.0 CACHE_PORT=8080 CACHE_LOG_FORMAT=json
EXPOSE 8080

# `cachegate healthcheck` exits 0 when /health/ready on CACHE_PORT says healthy (no curl needed).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/cachegate", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/cachegate"]
