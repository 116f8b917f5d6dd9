# The slawatch container image, as charts/slawatch runs it:
#
#   docker build -t slawatch:0.1.0 .
#
# Build stage: the Debian packages scripts/install-deps.sh installs for a build (librdkafka is
# compiled from source by rdkafka-sys and links OpenSSL and zlib).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# No debug info in the image (the release profile keeps it for profiling).
ENV CARGO_PROFILE_RELEASE_DEBUG=0
RUN cargo build --release --locked --bin slawatch \
    && install -m 0755 target/release/slawatch /usr/local/bin/slawatch

# Runtime: the shared libraries the binary links, CA certificates for TLS to Kafka and SMTP,
# and a user without a home or a shell. The chart runs it as uid 10001 with a read-only root.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 slawatch \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin slawatch \
    && install -d -o 10001 -g 10001 /var/lib/slawatch
COPY --from=build /usr/local/bin/slawatch /usr/local/bin/slawatch
USER 10001:10001
WORKDIR /var/lib/slawatch
EXPOSE 8632
ENTRYPOINT ["slawatch"]
CMD ["--help"]
