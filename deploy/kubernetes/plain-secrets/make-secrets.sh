#!/usr/bin/env bash
# The plain-Secret alternative to cert-manager: makes a private CA, the host's
# client certificate and one server certificate per remote plugin with the
# openssl CLI, and writes them as kubernetes.io/tls Secrets (with ca.crt, the
# same keys cert-manager writes) to plain-secrets/secrets.yaml, which you
# apply instead of cert-manager/:
#   bash deploy/kubernetes/plain-secrets/make-secrets.sh && kubectl apply -f deploy/kubernetes/plain-secrets/secrets.yaml
# Keep secrets.yaml out of version control. To rotate, run it again and apply:
# the pods see the new files (Secret volumes update in place) without a restart.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
days="${DAYS:-90}"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days 365 -subj /CN=plugwire-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out ca.crt
issue() { # name usage [dns...]
  local name=$1 usage=$2; shift 2
  openssl ecparam -name prime256v1 -genkey -noout -out "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$usage"
    if [ $# -gt 0 ]; then printf 'subjectAltName=%s\n' "$(printf 'DNS:%s,' "$@" | sed 's/,$//')"; fi
  } > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -sha256 -extfile "$name.ext" -out "$name.crt"
}
secret() { # secret-name cert-name
  cat <<YAML
---
apiVersion: v1
kind: Secret
metadata:
  name: $1
  namespace: plugwire
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$2.crt")
  tls.key: $(base64 -w0 "$2.key")
  ca.crt: $(base64 -w0 ca.crt)
YAML
}
issue host clientAuth,serverAuth plugwire-host plugwire-host.plugwire.svc plugwire-host.plugwire.svc.cluster.local
{
  secret plugwire-host-client-tls host
  for p in counter echo counter-go presence; do
    issue "$p" serverAuth,clientAuth "$p" "$p.plugwire.svc" "$p.plugwire.svc.cluster.local"
    secret "plugwire-$p-tls" "$p"
  done
} > "$here/secrets.yaml"
echo "wrote $here/secrets.yaml"
