#!/usr/bin/env bash
# Renders what reaches a cluster, as the PR workflow checks it (.github/workflows/pr.yaml):
#   - `helm lint --strict` and `helm template` of charts/shipyard with every scenario in
#     charts/shipyard/ci/*-values.yaml (the environments' values and the chart's test scenarios);
#   - `kubectl kustomize` of every manifests/overlays/<env> (the InferenceService each record deploys).
# The rendered YAML lands in build/render/ (uploaded by CI for review). helm and kubectl are the
# pinned ones `make k8s-tools` builds into .tools/bin (HELM=/KUBECTL= to use others).
#
#   bash hack/ci/render.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
helm="${HELM:-$root/.tools/bin/helm}"
kubectl="${KUBECTL:-$root/.tools/bin/kubectl}"
out="$root/build/render"

die() {
  printf '[render] error: %s\n' "$*" >&2
  exit 1
}
for tool in "$helm" "$kubectl"; do
  [[ -x $tool ]] || die "no $tool: run 'make k8s-tools' (or set HELM=/KUBECTL=)"
done

cd "$root"
rm -rf "$out"
mkdir -p "$out"
shopt -s nullglob
values=(charts/shipyard/ci/*-values.yaml)
overlays=(manifests/overlays/*/)
((${#values[@]})) || die "no charts/shipyard/ci/*-values.yaml"
((${#overlays[@]})) || die "no manifests/overlays/*/"

for v in "${values[@]}"; do
  scenario="$(basename "$v" -values.yaml)"
  printf '[render] chart, %s\n' "$v"
  "$helm" lint --strict charts/shipyard -f "$v"
  "$helm" template "shipyard-$scenario" charts/shipyard -n shipyard-system -f "$v" >"$out/chart-$scenario.yaml"
done
for o in "${overlays[@]}"; do
  env="$(basename "$o")"
  printf '[render] overlay, %s\n' "$o"
  "$kubectl" kustomize "$o" >"$out/overlay-$env.yaml"
done
printf '[render] %d chart scenarios and %d overlays rendered into %s\n' "${#values[@]}" "${#overlays[@]}" "${out#"$root"/}"
