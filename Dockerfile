# syntax=docker/dockerfile:1
# smsgate: static binary on distroless, non-root. Starts on the example config (mock providers).
#   docker build -t smsgate .
#   docker run -p 8080:8080 smsgate
# In production mount your config and a volume for the message log:
#   docker run -p 8080:8080 -v $PWD/smsgate.yaml:/etc/smsgate/config.yaml:ro -v smsgate-data:/data smsgate

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Pure Go (modernc.org/sqlite needs no cgo), so the binary is static.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/smsgate ./cmd/smsgate \
 && /out/smsgate validate --config config.example.yaml \
 && mkdir -p /out/data \
 && sed -e 's|listen: 127.0.0.1:8080|listen: 0.0.0.0:8080|' -e 's|path: data/smsgate.db|path: /data/smsgate.db|' -e 's|format: text|format: json|' \
      config.example.yaml > /out/config.yaml \
 && /out/smsgate validate --config /out/config.yaml

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/smsgate /usr/local/bin/smsgate
COPY --from=build /out/config.yaml /etc/smsgate/config.yaml
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
EXPOSE 8080
VOLUME ["/data"]
# distroless has no shell or curl, so the binary probes itself. Kubernetes: use httpGet probes on
# /healthz (liveness) and /readyz (readiness) instead. With server.tls, override it with
# `smsgate health --insecure --url https://127.0.0.1:PORT/healthz`.
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 CMD ["/usr/local/bin/smsgate", "health", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/smsgate"]
CMD ["serve", "--config", "/etc/smsgate/config.yaml"]
