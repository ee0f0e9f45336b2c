#!/usr/bin/env bash
# Checks the observability contract offline: the Prometheus rules and the Grafana dashboards
# against docs/metrics.md.
#
#   1. promtool check rules   recording-rules.yaml and alert-rules.yaml are valid
#   2. promtool test rules    the rule unit tests (a firing and a silent case for every alert,
#                             the recording rules' values)
#   3. check-dashboards.py    dashboards well-formed; every metric and label in dashboards and
#                             rules in the catalogue; alerts' annotations, runbooks and tests
#   4. promtool check rules   every dashboard expression, through Prometheus' own parser
#   5. check-dashboards.py --self-test   the checker rejects bad dashboards and rules
#
# Installs what it needs when missing, as scripts/ensure-deps.sh does: promtool (Debian package
# `prometheus`, without its recommends) and PyYAML (`python3-yaml`). Runs every step, then exits
# non-zero if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

RULES=charts/calanque/files/prometheus
have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  echo "installing with apt: $*"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

if ! have promtool; then
  apt_install prometheus
  # Only promtool is wanted: on a machine running systemd the package also starts a Prometheus
  # server (on :9090, the port calanque's telemetry uses in containers). Stop what we started.
  if [ -d /run/systemd/system ] && systemctl is-active --quiet prometheus 2>/dev/null; then
    echo "stopping and disabling the prometheus service the package started (only promtool is needed)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  hash -r
fi
have promtool || { echo "promtool still not on PATH after installing prometheus" >&2; exit 1; }
python3 -c 'import yaml' 2>/dev/null || apt_install python3-yaml

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

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

echo "promtool: $(promtool --version 2>&1 | head -n 1)"
step "promtool check rules" promtool check rules "$RULES/recording-rules.yaml" "$RULES/alert-rules.yaml"
# shellcheck disable=SC2046 # the glob is the list of test files
step "promtool test rules" promtool test rules $(ls "$RULES"/tests/*.yaml)
step "dashboards and rules against docs/metrics.md" \
  python3 scripts/check-dashboards.py --emit-promql-rules "$tmp/dashboard-expressions.yaml"
if [ -s "$tmp/dashboard-expressions.yaml" ]; then
  step "dashboard expressions through promtool's parser" \
    promtool check rules "$tmp/dashboard-expressions.yaml"
else
  echo "== dashboard expressions through promtool's parser: no expression written"
  failed=$((failed + 1))
  failures+=("dashboard expressions through promtool's parser")
fi
step "check-dashboards self-test" python3 scripts/check-dashboards.py --self-test

if [ "$failed" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failures[@]}"
fi
echo "check-observability: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
