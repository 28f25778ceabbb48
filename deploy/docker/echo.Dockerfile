# The echo example (TypeScript) as a remote plugin in attach mode: it serves
# mutual TLS on PLUGWIRE_LISTEN and grpc.health.v1 for the kubelet on
# PLUGWIRE_HEALTH_LISTEN (docs/protocol.md §18). Build from the repository root:
#   docker build -f deploy/docker/echo.Dockerfile -t plugwire/echo:dev .
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY . .
RUN npm ci --no-audit --no-fund && npm run build --silent

FROM node:20-bookworm-slim
WORKDIR /app
# The SDK bundle (sdk/dist/plugwire-sdk.mjs) carries grpc-js and the codec: the example needs nothing else.
COPY --from=build /src/sdk/dist /app/node_modules/@plugwire/sdk/dist
COPY --from=build /src/sdk/package.json /app/node_modules/@plugwire/sdk/package.json
COPY --from=build /src/plugins-example/dist/echo.js /app/plugin/echo.js
RUN echo '{"type":"module"}' > /app/plugin/package.json
ENV PLUGWIRE_LISTEN=tcp://0.0.0.0:7443 \
    PLUGWIRE_HEALTH_LISTEN=tcp://0.0.0.0:7444 \
    PLUGWIRE_TLS_CERT=/etc/plugwire/tls/tls.crt \
    PLUGWIRE_TLS_KEY=/etc/plugwire/tls/tls.key \
    PLUGWIRE_TLS_CLIENT_CA=/etc/plugwire/tls/ca.crt
EXPOSE 7443 7444
USER node
ENTRYPOINT ["node", "/app/plugin/echo.js"]
