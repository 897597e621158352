# syntax=docker/dockerfile:1
# stunner-gateway-operator: build with the workspace toolchain, run on a minimal Debian as a non-root user.
#   docker build -f deploy/docker/stunner-gateway-operator.Dockerfile -t ghcr.io/stunner-rs/stunner-gateway-operator:dev .
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p stunner-gateway-operator --bin stunner-gateway-operator && cp target/release/stunner-gateway-operator /stunner-gateway-operator

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libssl3 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /stunner-gateway-operator /usr/local/bin/stunner-gateway-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/stunner-gateway-operator"]
