#!/usr/bin/env bash
# Builds the real Kubernetes binaries the k8s test tier runs (kube-apiserver, kubectl, etcd,
# kube-controller-manager, kube-scheduler, helm), kwok (fake nodes) and the KServe controller manager,
# fetches the KServe CRDs and the cluster config KServe expects, and builds the S3 server the tests use
# (minio) and promtool (the chart's alert-rule tests), all into <repo>/.tools/ (git-ignored).
# Versions: versions.env.
#
#   make k8s-tools                         # build what is missing or out of date
#   FORCE=1 bash hack/k8s-tools/build.sh   # rebuild everything
#   bash hack/k8s-tools/build.sh minio     # only these: kubernetes etcd helm kserve-crds kserve kwok minio prometheus
#
# Why a tools module per upstream module: `go install k8s.io/kubernetes/cmd/kube-apiserver@vX` is
# refused because k8s.io/kubernetes' go.mod replaces its k8s.io/* staging modules with local paths
# (etcd's server module does the same for its siblings). Each tools module requires the upstream
# module, lists the binaries as `tool` directives, turns every local-path replace of a module it
# requires into a replace by the matching published tag, and keeps every version replace verbatim
# (KServe pins controller-runtime, k8s.io/*, grpc below what its requires say). That is derived from
# the upstream go.mod, never typed, and the generated go.mod/go.sum are committed: every build
# verifies the exact same module graph, and only a version bump or a new tool regenerates them
# (`go mod tidy`, 6-9 minutes for KServe's graph; CI never does it, it only runs `go build`).
# minio and promtool need none: their go.mod have no replace directives, so `go install
# module[/cmd/...]@version` builds them against upstream's own go.sum.
#
# Each tool has a stamp in .tools/stamps/ holding its version and a hash of everything that shapes
# the binary (this script, its tools go.mod/go.sum, the Go version), so a rerun is instant. Modules
# and compiled packages live in the default Go caches (~/go/pkg/mod, ~/.cache/go-build), so a fresh
# clone on the same machine rebuilds all of them in ~40 s (relinks only).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tools="$root/.tools"
bin="$tools/bin"
stamps="$tools/stamps"
crds="$tools/crds"

# shellcheck source=versions.env
source "$here/versions.env"

log() { printf '[k8s-tools] %s\n' "$*" >&2; }
die() {
  printf '[k8s-tools] error: %s\n' "$*" >&2
  exit 1
}

GO="${GO:-$(command -v go || true)}"
[[ -n $GO ]] || { [[ -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go; } ||
  die "Go not found: install Go >= 1.26 (https://go.dev/dl) or set GO=/path/to/go"
PYTHON="${PYTHON:-$(command -v python3 || true)}"
[[ -n $PYTHON ]] || die "python3 not found (used to read upstream go.mod files)"

# Build with this Go, never a downloaded toolchain; static binaries; no VCS stamping (we build from
# the module cache, not from a checkout).
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
go_version="$("$GO" env GOVERSION)"
mkdir -p "$bin" "$stamps"

# stamp NAME VERSION [MODULE_DIR] -> "VERSION HASH" for what currently shapes the tool NAME.
stamp() {
  local name=$1 version=$2 moddir=${3:-}
  local hash
  hash="$({
    echo "$name $version $go_version"
    cat "$here/build.sh"
    if [[ -n $moddir ]]; then cat "$here/$moddir/go.mod" "$here/$moddir/go.sum"; fi
  } | sha256sum | cut -d' ' -f1)"
  echo "$version $hash"
}

# fresh NAME STAMP OUTPUT... -> success when the recorded stamp matches and every output exists.
fresh() {
  local name=$1 want=$2
  shift 2
  [[ -z ${FORCE:-} && -f $stamps/$name && "$(cat "$stamps/$name")" == "$want" ]] || return 1
  local out
  for out in "$@"; do [[ -e $out ]] || return 1; done
}

# gen_module DIR MODULE VERSION REPLACE_VERSION TOOL_PACKAGE...
# Writes hack/k8s-tools/DIR/go.mod (and go.sum via `go mod tidy`) unless it already pins
# MODULE@VERSION and lists exactly these tools. Only a version bump or a new tool regenerates: CI
# never does (`go mod tidy` of KServe's graph takes 6-9 minutes), it builds from the committed files.
gen_module() {
  local name=$1 module=$2 version=$3 replace_version=$4
  shift 4
  local dir="$here/$name"
  # (bash only: this runs on every `make k8s-tools`, which should take well under a second)
  if [[ -f $dir/go.mod ]] &&
    grep -qE "^[[:space:]]*(require[[:space:]]+)?$module $version( //.*)?\$" "$dir/go.mod" &&
    [[ "$(sed -n 's/^tool //p' "$dir/go.mod" | sort)" == "$(printf '%s\n' "$@" | sort)" ]]; then
    return
  fi
  log "generating $name/go.mod from $module@$version's go.mod"
  local upstream
  upstream="$("$GO" list -m -f '{{.GoMod}}' "$module@$version")" ||
    die "cannot resolve $module@$version through GOPROXY=$("$GO" env GOPROXY)"
  # Keep upstream's go directive and godebug defaults (they change runtime behaviour), turn each
  # local-path replace of a module upstream requires into a replace by the published tag, and carry
  # every version replace verbatim (KServe pins controller-runtime and k8s.io/* below what its
  # requires say; without them the graph, and the binary, would not be upstream's).
  rm -rf "$dir"
  mkdir -p "$dir"
  "$GO" mod edit -json "$upstream" | "$PYTHON" -c '
import json, sys
module, version, replace_version, name, *tools = sys.argv[1:]
m = json.load(sys.stdin)
required = {r["Path"] for r in m.get("Require") or []}
def side(v):
    return v["Path"] + (" " + v["Version"] if v.get("Version") else "")
local = sorted(
    r["Old"]["Path"]
    for r in m.get("Replace") or []
    if r["New"]["Path"].startswith((".", "/")) and r["Old"]["Path"] in required
)
verbatim = [
    side(r["Old"]) + " => " + side(r["New"])
    for r in m.get("Replace") or []
    if not r["New"]["Path"].startswith((".", "/"))
]
lines = [
    f"// Code generated by hack/k8s-tools/build.sh from {module}@{version}; DO NOT EDIT.",
    "// Change the version in hack/k8s-tools/versions.env and rerun `make k8s-tools` instead.",
    "",
    f"module shipyard.local/k8s-tools/{name}",
    "",
    "go " + m["Go"],
]
lines += ["godebug " + d["Key"] + "=" + d["Value"] for d in m.get("GoDebug") or []]
lines += [""] + [f"tool {pkg}" for pkg in tools] + ["", f"require {module} {version}"]
if local or verbatim:
    lines += ["", "replace ("]
    lines += [f"\t{path} => {path} {replace_version}" for path in local]
    lines += [f"\t{line}" for line in verbatim]
    lines += [")"]
print("\n".join(lines))
print(
    f"[k8s-tools] {len(local)} local-path replace(s) pinned to {replace_version},"
    f" {len(verbatim)} version replace(s) kept",
    file=sys.stderr,
)
' "$module" "$version" "$replace_version" "$name" "$@" >"$dir/go.mod"
  (cd "$dir" && "$GO" mod tidy) ||
    die "could not resolve the module graph of $module@$version (see above); is every module served by GOPROXY?"
  log "wrote ${dir#"$root"/}/go.mod and go.sum: commit them"
}

# build MODULE_DIR PACKAGE OUTPUT LDFLAGS
build() {
  local moddir=$1 pkg=$2 out=$3 ldflags=$4
  local started=$SECONDS
  (cd "$here/$moddir" && "$GO" build -trimpath -ldflags "-s -w $ldflags" -o "$out.partial" "$pkg") ||
    die "building $pkg failed (see above)"
  mv -f "$out.partial" "$out"
  log "built $out in $((SECONDS - started))s"
}

k8s_minor_of() { # v1.35.4 -> 35
  local v=${1#v}
  v=${v#*.}
  echo "${v%%.*}"
}

# --- kube-apiserver and kubectl -------------------------------------------------------------------
# The same -X flags as kubernetes' hack/lib/version.sh, so /version reports the real release. The
# module carries no commit metadata: buildDate is the tag's time and gitCommit is left empty.
kube_version_ldflags() {
  local v=$1 date minor flags="" key val p
  date="$("$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "k8s.io/kubernetes@$v")"
  minor="$(k8s_minor_of "$v")"
  for key in gitVersion gitMajor gitMinor gitCommit gitTreeState buildDate; do
    case $key in
      gitVersion) val=$v ;;
      gitMajor) val=1 ;;
      gitMinor) val=$minor ;;
      gitCommit) val= ;;
      gitTreeState) val=clean ;;
      buildDate) val=$date ;;
    esac
    for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do flags+=" -X $p.$key=$val"; done
  done
  echo "$flags"
}

build_kubernetes() {
  local v=$KUBERNETES_VERSION
  # kubectl comes from the same module so its version matches the apiserver's (no skew warnings,
  # same server-side apply and kustomize behaviour as a real 1.x cluster's tooling); so do the
  # controller-manager and scheduler that make the test cluster reconcile like a real one.
  gen_module kubernetes k8s.io/kubernetes "$v" "v0.${v#v1.}" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
  local tool want flags=""
  for tool in kube-apiserver kubectl kube-controller-manager kube-scheduler; do
    want="$(stamp "$tool" "$v" kubernetes)"
    if fresh "$tool" "$want" "$bin/$tool"; then
      log "$tool $v is up to date"
      continue
    fi
    case $tool in
      kube-apiserver) log "building kube-apiserver $v (cold: ~4-6 min on 2 cores; from the Go build cache: ~10 s)" ;;
      kubectl) log "building kubectl $v (cold: ~30 s after kube-apiserver)" ;;
      kube-controller-manager) log "building kube-controller-manager $v (cold: ~3 min after kube-apiserver)" ;;
      kube-scheduler) log "building kube-scheduler $v (cold: ~10 s after kube-controller-manager)" ;;
    esac
    [[ -n $flags ]] || flags="$(kube_version_ldflags "$v")"
    build kubernetes "k8s.io/kubernetes/cmd/$tool" "$bin/$tool" "$flags"
    echo "$want" >"$stamps/$tool"
  done
}

# --- etcd ------------------------------------------------------------------------------------------
build_etcd() {
  local v=$ETCD_VERSION
  # The server module's main package is etcd itself; its siblings share its version tag.
  gen_module etcd go.etcd.io/etcd/server/v3 "$v" "$v" go.etcd.io/etcd/server/v3
  local want
  want="$(stamp etcd "$v" etcd)"
  if fresh etcd "$want" "$bin/etcd"; then
    log "etcd $v is up to date"
    return
  fi
  log "building etcd $v (cold: ~45 s)"
  build etcd go.etcd.io/etcd/server/v3 "$bin/etcd" ""
  echo "$want" >"$stamps/etcd"
}

# --- helm ------------------------------------------------------------------------------------------
build_helm() {
  local v=$HELM_VERSION
  gen_module helm helm.sh/helm/v3 "$v" "$v" helm.sh/helm/v3/cmd/helm
  local want
  want="$(stamp helm "$v" helm)"
  if fresh helm "$want" "$bin/helm"; then
    log "helm $v is up to date"
    return
  fi
  log "building helm $v (cold: ~1.5-2 min)"
  # As helm's Makefile does: the version, and the Kubernetes version of its client-go for
  # .Capabilities.KubeVersion in `helm template`/lint.
  local client_go major minor
  client_go="$(cd "$here/helm" && "$GO" list -m -f '{{.Version}}' k8s.io/client-go)" # v0.35.1
  major=$(($(echo "${client_go#v}" | cut -d. -f1) + 1))
  minor="$(echo "${client_go#v}" | cut -d. -f2)"
  local flags="-X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    flags+=" -X $p.k8sVersionMajor=$major -X $p.k8sVersionMinor=$minor"
  done
  build helm helm.sh/helm/v3/cmd/helm "$bin/helm" "$flags"
  echo "$want" >"$stamps/helm"
}

# --- CRDs ------------------------------------------------------------------------------------------
fetch_kserve_crds() {
  local v=$KSERVE_VERSION module=github.com/kserve/kserve
  local want
  want="$(stamp kserve-crds "$v")"
  if fresh kserve-crds "$want" "$crds/kserve"; then
    log "KServe CRDs $v are up to date"
    return
  fi
  log "fetching KServe CRDs from $module@$v"
  local dir
  dir="$("$GO" mod download -json "$module@$v" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')" ||
    die "cannot download $module@$v through GOPROXY=$("$GO" env GOPROXY)"
  rm -rf "$crds/kserve"
  mkdir -p "$crds/kserve"
  # The top-level CRDs and ClusterStorageContainer (KServe's pod webhook lists them for every
  # predictor with a storageUri); the other sub-folders (llmisvc, localmodel) hold optional CRDs
  # whose kustomize patches expect KServe's in-cluster webhook Service.
  local f n=0
  for f in "$dir"/config/crd/full/*.yaml "$dir"/config/crd/full/clusterstoragecontainer/*.yaml; do
    [[ $(basename "$f") == kustomization.yaml ]] && continue
    cp "$f" "$crds/kserve/"
    n=$((n + 1))
  done
  ((n > 0)) || die "no CRDs found in $module@$v/config/crd/full"
  chmod -R u+w "$crds/kserve" # module-cache files are read-only
  echo "$module $v" >"$crds/kserve/SOURCE"
  log "copied $n KServe CRDs to ${crds#"$root"/}/kserve"
  echo "$want" >"$stamps/kserve-crds"
}

# --- the KServe controller manager and what it needs in the cluster ------------------------------
# cmd/manager of the same github.com/kserve/kserve module the CRDs come from. Its tools module keeps
# every one of KServe's own replace directives verbatim: they are version replaces (controller-runtime
# v0.22.5, k8s.io/* v0.34.x, grpc, expr), not local paths, and the binary must be built against them.
kserve_config_out="$tools/kserve"
build_kserve() {
  local v=$KSERVE_VERSION module=github.com/kserve/kserve
  gen_module kserve "$module" "$v" "$v" "$module/cmd/manager"
  local want
  want="$(stamp kserve-manager "$v" kserve)"
  if fresh kserve-manager "$want" "$bin/kserve-manager" "$kserve_config_out/webhooks.yaml"; then
    log "KServe controller manager $v is up to date"
    return
  fi
  [[ -x $bin/kubectl ]] || die "kubectl is needed to render KServe's kustomizations: build.sh kubernetes first"
  log "building the KServe controller manager $v (cold: ~4 min on 2 cores, ~11 min sharing them; from the Go build cache: ~5 s)"
  build kserve "$module/cmd/manager" "$bin/kserve-manager" ""
  # What the manager expects to find in its cluster, rendered as KServe's own kustomizations render
  # them (image names and tags of the runtimes): the inferenceservice-config ConfigMap, the
  # ClusterServingRuntimes, the default ClusterStorageContainer, and its webhook configurations
  # (service references; the test fixture points them at the loopback webhook server).
  local dir
  dir="$("$GO" mod download -json "$module@$v" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')" ||
    die "cannot download $module@$v through GOPROXY=$("$GO" env GOPROXY)"
  rm -rf "$kserve_config_out"
  mkdir -p "$kserve_config_out"
  "$bin/kubectl" kustomize "$dir/config/runtimes" >"$kserve_config_out/runtimes.yaml"
  "$bin/kubectl" kustomize "$dir/config/storagecontainers" >"$kserve_config_out/storagecontainers.yaml"
  cp "$dir/config/configmap/inferenceservice.yaml" "$kserve_config_out/inferenceservice-config.yaml"
  cp "$dir/config/webhook/manifests.yaml" "$kserve_config_out/webhooks.yaml"
  chmod -R u+w "$kserve_config_out"
  echo "$module $v" >"$kserve_config_out/SOURCE"
  echo "$want" >"$stamps/kserve-manager"
}

# --- kwok: fake nodes whose Pods become Running and Ready without a kubelet -----------------------
# The standalone binary takes its stages (how nodes and pods progress) from a --config file; the
# ones kwokctl uses by default ship in the module's kustomize/stage/, copied to .tools/kwok/.
kwok_out="$tools/kwok"
build_kwok() {
  local v=$KWOK_VERSION module=sigs.k8s.io/kwok
  gen_module kwok "$module" "$v" "$v" "$module/cmd/kwok"
  local want
  want="$(stamp kwok "$v" kwok)"
  if fresh kwok "$want" "$bin/kwok" "$kwok_out/stages.yaml"; then
    log "kwok $v is up to date"
    return
  fi
  [[ -x $bin/kubectl ]] || die "kubectl is needed to render kwok's stage kustomizations: build.sh kubernetes first"
  log "building kwok $v (cold: ~2.5 min on 2 cores, ~6 min sharing them; from the Go build cache: ~5 s)"
  build kwok "$module/cmd/kwok" "$bin/kwok" ""
  local dir stage
  dir="$("$GO" mod download -json "$module@$v" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')" ||
    die "cannot download $module@$v through GOPROXY=$("$GO" env GOPROXY)"
  rm -rf "$kwok_out"
  mkdir -p "$kwok_out"
  for stage in node/fast node/heartbeat-with-lease pod/fast; do
    echo "---"
    "$bin/kubectl" kustomize "$dir/kustomize/stage/$stage"
  done >"$kwok_out/stages.yaml"
  echo "$module $v kustomize/stage/{node/fast,node/heartbeat-with-lease,pod/fast}" >"$kwok_out/SOURCE"
  echo "$want" >"$stamps/kwok"
}

# --- minio (the S3 server of the tests' `s3` fixture) ------------------------------------------------
build_minio() {
  local v=$MINIO_VERSION module=github.com/minio/minio
  local want
  want="$(stamp minio "$v")"
  if fresh minio "$want" "$bin/minio"; then
    log "minio $v is up to date"
    return
  fi
  log "building minio $v (cold: ~3-4 min on 2 cores; from the Go build cache: ~10 s)"
  local started=$SECONDS
  # The version flags of minio's buildscripts/gen-ldflags.go, so `minio --version` and the server's
  # release date are the commit's (left unset they read DEVELOPMENT.GOGET). The proxy knows only the
  # commit's 12-hex prefix, not the full hash. Its Makefile's `-tags kqueue` only matters on BSDs.
  local released commit flags
  released="$("$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$module@$v")" ||
    die "cannot resolve $module@$v through GOPROXY=$("$GO" env GOPROXY)"
  commit=${v##*-}
  flags="-X $module/cmd.Version=$released -X $module/cmd.ReleaseTag=DEVELOPMENT.${released//:/-}"
  flags+=" -X $module/cmd.CommitID=$commit -X $module/cmd.ShortCommitID=$commit"
  flags+=" -X $module/cmd.CopyrightYear=${released%%-*}"
  # `go build` does not take module@version, `go install` does but has no -o: install into a temp
  # GOBIN and move the binary into place.
  local tmp
  tmp="$(mktemp -d "$tools/minio-build.XXXXXX")"
  GOBIN="$tmp" "$GO" install -trimpath -ldflags "-s -w $flags" "$module@$v" || {
    rm -rf "$tmp"
    die "building $module@$v failed (see above)"
  }
  mv -f "$tmp/minio" "$bin/minio"
  rm -rf "$tmp"
  log "built $bin/minio in $((SECONDS - started))s"
  echo "$want" >"$stamps/minio"
}

# --- promtool (checks and unit-tests the chart's Prometheus alert rules) ----------------------------
# cmd/promtool of github.com/prometheus/prometheus. The proxy serves Prometheus 3.x.y as the module
# version v0.3xx.y (3.16.0 is v0.316.0: upstream never made the module /v3). Like minio it needs no
# tools module: its go.mod has no replace directives, so `go install module/cmd/promtool@version`
# builds it against upstream's own go.sum.
build_prometheus() {
  local v=$PROMETHEUS_VERSION module=github.com/prometheus/prometheus
  local want
  want="$(stamp promtool "$v")"
  if fresh promtool "$want" "$bin/promtool"; then
    log "promtool $v is up to date"
    return
  fi
  log "building promtool $v (cold: ~8 min on 2 shared cores; from the Go build cache: ~10 s)"
  local started=$SECONDS
  # The ldflags of upstream's .promu.yml, so `promtool --version` reports the release (3.16.0 for
  # v0.316.0); the proxy carries no commit or branch, the build date is the tag's. Its `netgo` tag is
  # what CGO_ENABLED=0 already gives; `builtinassets` only concerns the server's web UI.
  local released minor release flags p=github.com/prometheus/common/version
  released="$("$GO" list -m -f '{{.Time.UTC.Format "20060102-15:04:05"}}' "$module@$v")" ||
    die "cannot resolve $module@$v through GOPROXY=$("$GO" env GOPROXY)"
  minor=${v#v0.}
  minor=${minor%%.*}
  release="$((minor / 100)).$((minor % 100)).${v##*.}"
  flags="-X $p.Version=$release -X $p.Revision= -X $p.Branch= -X $p.BuildUser=shipyard -X $p.BuildDate=$released"
  local tmp
  tmp="$(mktemp -d "$tools/promtool-build.XXXXXX")"
  GOBIN="$tmp" "$GO" install -trimpath -tags netgo -ldflags "-s -w $flags" "$module/cmd/promtool@$v" || {
    rm -rf "$tmp"
    die "building $module/cmd/promtool@$v failed (see above)"
  }
  mv -f "$tmp/promtool" "$bin/promtool"
  rm -rf "$tmp"
  log "built $bin/promtool in $((SECONDS - started))s"
  echo "$want" >"$stamps/promtool"
}

log "Go: $go_version ($GO), GOPROXY=$("$GO" env GOPROXY)"
all_steps=(kubernetes etcd helm kserve-crds kserve kwok minio prometheus)
steps=("${all_steps[@]}")
(($# == 0)) || steps=("$@")
for step in "${steps[@]}"; do
  case $step in
    kubernetes) build_kubernetes ;;
    etcd) build_etcd ;;
    helm) build_helm ;;
    kserve-crds) fetch_kserve_crds ;;
    kserve) build_kserve ;;
    kwok) build_kwok ;;
    minio) build_minio ;;
    prometheus) build_prometheus ;;
    *) die "unknown tool '$step' (known: ${all_steps[*]})" ;;
  esac
done
log "done: $(cd "$bin" && echo *) in ${bin#"$root"/}, CRDs in ${crds#"$root"/}"
