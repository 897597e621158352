# syntax=docker/dockerfile:1
# turncat: build with the workspace toolchain, run on a minimal Debian as a non-root user.
#   docker build -f deploy/docker/turncat.Dockerfile -t ghcr.io/stunner-rs/turncat:dev .
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p turncat --bin turncat && cp target/release/turncat /turncat

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libssl3 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /turncat /usr/local/bin/turncat
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/turncat"]
