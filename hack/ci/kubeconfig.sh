#!/usr/bin/env bash
# Writes the environment's deployer kubeconfig for the job's later steps (`shipyard release apply`,
# `rollout`, `status`): from $KUBECONFIG_B64 (base64 of a kubeconfig for the chart's shipyard-deployer
# ServiceAccount; a GitHub environment secret) to $RUNNER_TEMP/shipyard-kubeconfig (mode 600), and
# KUBECONFIG=<that file> into $GITHUB_ENV.
#
# GitHub masks the secret as given (the base64 text), not what is decoded from it: every credential
# value inside (token, client key and certificate data, password) is masked with ::add-mask:: before
# anything else runs. The file is never printed.
#
#   KUBECONFIG_B64=... bash hack/ci/kubeconfig.sh
set -euo pipefail

die() {
  printf '[kubeconfig] error: %s\n' "$*" >&2
  exit 1
}
[[ -n ${KUBECONFIG_B64:-} ]] || die "KUBECONFIG_B64 is empty: set the environment's KUBECONFIG_B64 secret (base64 of the deployer's kubeconfig)"
out="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/shipyard-kubeconfig"
umask 077
base64 -d <<<"$KUBECONFIG_B64" >"$out" 2>/dev/null || die "KUBECONFIG_B64 is not valid base64"
grep -q '^apiVersion:' "$out" || grep -q '^clusters:' "$out" || die "KUBECONFIG_B64 does not decode to a kubeconfig"

# The values of credential keys, unquoted, one per line -> masked.
sed -nE 's/^[[:space:]-]*(token|client-key-data|client-certificate-data|password|id-token|refresh-token|access-token):[[:space:]]*//p' "$out" |
  sed -E 's/^["'\'']//; s/["'\'']$//' |
  while IFS= read -r value; do
    [[ -z $value ]] || echo "::add-mask::$value"
  done

if [[ -n ${GITHUB_ENV:-} ]]; then
  echo "KUBECONFIG=$out" >>"$GITHUB_ENV"
fi
printf '[kubeconfig] wrote %s (credentials masked)\n' "$out" >&2
