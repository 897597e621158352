# syntax=docker/dockerfile:1
# stunnerd: build with the workspace toolchain, run on a minimal Debian as a non-root user.
#   docker build -f deploy/docker/stunnerd.Dockerfile -t ghcr.io/stunner-rs/stunnerd:dev .
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p stunnerd --bin stunnerd && cp target/release/stunnerd /stunnerd

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libssl3 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /stunnerd /usr/local/bin/stunnerd
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/stunnerd"]
