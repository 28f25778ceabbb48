# The Go counter example (plugins-example/go/cmd/counter-go) as a remote
# plugin in attach mode: a static binary on a distroless base. Build from the
# repository root:
#   docker build -f deploy/docker/counter-go.Dockerfile -t plugwire/counter-go:dev .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY sdk/go sdk/go
COPY plugins-example/go plugins-example/go
RUN cd plugins-example/go && CGO_ENABLED=0 go build -trimpath -buildvcs=false -o /out/counter-go ./cmd/counter-go

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/counter-go /counter-go
ENV PLUGWIRE_LISTEN=tcp://0.0.0.0:7443 \
    PLUGWIRE_HEALTH_LISTEN=tcp://0.0.0.0:7444 \
    PLUGWIRE_TLS_CERT=/etc/plugwire/tls/tls.crt \
    PLUGWIRE_TLS_KEY=/etc/plugwire/tls/tls.key \
    PLUGWIRE_TLS_CLIENT_CA=/etc/plugwire/tls/ca.crt
EXPOSE 7443 7444
ENTRYPOINT ["/counter-go"]
