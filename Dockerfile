# One image, three services: the command picks which one runs.
#   docker run IMAGE producer | sales-consumer | inventory-consumer
#   docker run IMAGE sales-consumer audit
# Build: docker build -t store-events .   (cargo-chef keeps the dependency layer cached)
# Behind a TLS-inspecting proxy, give the build your CA bundle as a secret (used by cargo
# while building, never copied into an image):
#   DOCKER_BUILDKIT=1 docker build --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt -t store-events .
# (No `# syntax=` line: BuildKit's built-in Dockerfile frontend is used, so a build needs
# no registry but the base images'; scripts/containers/base-images.sh makes those from
# Debian's packages where no registry is reachable.)

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
WORKDIR /build
RUN --mount=type=secret,id=ca-certificates,target=/etc/ssl/certs/ca-certificates.crt \
    cargo install cargo-chef --locked --version 0.1.73

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
# The vendored rskafka is a path dependency outside the workspace: the recipe does not
# carry it, so it comes with the dependencies it is built beside (it changes rarely).
COPY vendor vendor
RUN --mount=type=secret,id=ca-certificates,target=/etc/ssl/certs/ca-certificates.crt \
    cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bins \
 && strip target/release/producer target/release/sales-consumer target/release/inventory-consumer \
 && mkdir -p /state

# Distroless: glibc and CA certificates, no shell, no package manager, non-root user.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="store-events" \
      org.opencontainers.image.description="Retail store events through Kafka into S3, exactly once" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /build/target/release/producer \
                    /build/target/release/sales-consumer \
                    /build/target/release/inventory-consumer /usr/local/bin/
# Where a volume holding the local Iceberg catalog (a SQLite file) is mounted: owned by the
# user the services run as, so that a new named volume is too.
COPY --from=builder --chown=65532:65532 /state /var/lib/store-events
USER 65532:65532
ENV LOG_FORMAT=json
EXPOSE 8080 8081 8082
# Each binary's `healthcheck` asks its own /healthz on HTTP_ADDR (no curl needed); this
# default suits the producer, and compose and Kubernetes set one per service.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["/usr/local/bin/producer", "healthcheck"]
ENTRYPOINT []
CMD ["/usr/local/bin/producer"]
