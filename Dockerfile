# zoocore's container image: built with the Rust toolchain, run on a slim
# Debian with nothing but the binary and the entrypoint, which writes
# zoo.cfg from the official ZooKeeper image's environment variables
# (scripts/docker-entrypoint.sh; docker-compose.yaml runs three members).
#
#   docker build -t zoocore .
#   docker run --ulimit memlock=-1 --security-opt seccomp=unconfined -p 2181:2181 zoocore
#
# io_uring: Docker's default seccomp profile (since 25.0) refuses the
# io_uring system calls zoocore is built on, hence seccomp=unconfined (or a
# profile that allows io_uring_setup, io_uring_enter, io_uring_register).
# memlock: each executor locks its io_uring memory (tuning/README.md).
FROM rust:1.95-bookworm AS build
# Kerberos (SASL GSSAPI): MIT's headers, and libclang for libgssapi's bindgen.
RUN apt-get update && apt-get install -y --no-install-recommends libkrb5-dev libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p zoocore --bin zoocore --features kerberos

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgssapi-krb5-2 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system zookeeper \
    && useradd --system --gid zookeeper --home-dir /data --no-create-home zookeeper
COPY --from=build /src/target/release/zoocore /usr/local/bin/zoocore
COPY scripts/docker-entrypoint.sh /docker-entrypoint.sh
ENV ZOO_CONF_DIR=/conf \
    ZOO_DATA_DIR=/data \
    ZOO_DATA_LOG_DIR=/datalog
VOLUME ["/data", "/datalog"]
# Clients, peers, the election port of the server lines, AdminServer.
EXPOSE 2181 2888 3888 8080
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["zoocore", "--config", "/conf/zoo.cfg"]
