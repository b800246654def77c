# perch: a multi-stage build. The builder compiles the `perch` binary in release mode (the
# same `cargo build --release -p perch-cli` CI checks); the runtime image is Debian slim with
# the binary, curl for the health check, and an unprivileged user. Models live in the store
# at /data (a volume): `docker run -v perch:/data ...`, then `perch import` / `perch create`
# inside it, or bake one in with `perch deploy dockerfile --model NAME`.
#
#   docker build -t perch .
#   docker run -p 8080:8080 -v perch:/data -v $PWD/models:/models:ro perch \
#       serve --host 0.0.0.0 --model /models/model.gguf --api-key-file /data/keys

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p perch-cli \
    && install -m 0755 target/release/perch /usr/local/bin/perch

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl=7.88.* ca-certificates=20230311* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home perch
COPY --from=build /usr/local/bin/perch /usr/local/bin/perch
ENV PERCH_HOME=/data
VOLUME ["/data"]
USER 10001
WORKDIR /data
EXPOSE 8080
# 200 only once the default model has loaded (503 while loading).
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health"]
ENTRYPOINT ["perch"]
# Mount a GGUF at /models/model.gguf, or pass your own arguments (a store name works too).
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--model", "/models/model.gguf"]
