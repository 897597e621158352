# syntax=docker/dockerfile:1
# stunner-auth-service: build with the workspace toolchain, run on a minimal Debian as a non-root user.
#   docker build -f deploy/docker/stunner-auth-service.Dockerfile -t ghcr.io/stunner-rs/stunner-auth-service:dev .
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p stunner-auth-service --bins && cp target/release/stunner-auth-service target/release/authd /

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libssl3 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /stunner-auth-service /authd /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/stunner-auth-service"]
