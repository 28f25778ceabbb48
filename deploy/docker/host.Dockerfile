# The plugwire host (the `plugwire` CLI), with the TypeScript examples so that
# plugins not attached over the network can still be spawned in the host's pod.
# Build from the repository root:
#   docker build -f deploy/docker/host.Dockerfile -t plugwire/host:dev .
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY . .
RUN npm ci --no-audit --no-fund && npm run build --silent && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
WORKDIR /app
COPY --from=build /src /app
# Snapshots and the admin token live on the PersistentVolumeClaim mounted here.
VOLUME /var/lib/plugwire
USER node
ENTRYPOINT ["node", "/app/host/dist/src/cli/main.js"]
CMD ["run", "--config", "/etc/plugwire/plugwire.yaml"]
