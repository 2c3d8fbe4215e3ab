# Multi-stage: build with the Rust toolchain, run on a small Debian base as a
# non-root user with nothing else in the image but CA certificates.
#   docker build -t ghcr.io/example/tokenledger:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tokenledger

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 tokenledger \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin tokenledger
COPY --from=build /src/target/release/tokenledger /usr/local/bin/tokenledger
# Spill space: the CronJob mounts an emptyDir here (the root is read-only).
ENV TMPDIR=/spill
USER 10001:10001
ENTRYPOINT ["tokenledger"]
CMD ["--help"]
