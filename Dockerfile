# syntax=docker/dockerfile:1
# Chronicle server image:  docker build -t chronicle .   (or: docker compose up --build)

FROM rust:1-bookworm AS builder
WORKDIR /src
# Queries are not checked against a live database at build time (uses .sqlx/ if present).
ENV SQLX_OFFLINE=true
# .git stays out of the context, so the commit for chronicle_build_info comes in as an argument:
#   docker build --build-arg CHRONICLE_GIT_SHA=$(git rev-parse --short=12 HEAD) -t chronicle .
ARG CHRONICLE_GIT_SHA=unknown
ENV CHRONICLE_GIT_SHA=$CHRONICLE_GIT_SHA
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin chronicle \
 && install -m 0755 target/release/chronicle /usr/local/bin/chronicle

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 chronicle \
 && useradd --system --uid 10001 --gid chronicle --home-dir /app --shell /usr/sbin/nologin chronicle \
 && mkdir -p /app && chown chronicle:chronicle /app
COPY --from=builder /usr/local/bin/chronicle /usr/local/bin/chronicle
WORKDIR /app
USER chronicle:chronicle
ENV BIND_ADDR=0.0.0.0:8080 \
    LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["chronicle"]
CMD ["serve"]
