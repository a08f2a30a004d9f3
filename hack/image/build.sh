#!/usr/bin/env bash
# Builds the Shipyard image (the KFP components' and the model server's) from the repository's
# Dockerfile, tagged with components/images.py's COMPONENT_IMAGE, and the tools its tests use.
#
#   make image          # = bash hack/image/build.sh image
#   make image-tools    # = bash hack/image/build.sh tools
#   FORCE=1 bash hack/image/build.sh image     # rebuild (the layer cache still applies)
#   IMAGE_ENGINE=buildah bash hack/image/build.sh image   # docker | buildah (default: docker when
#                                                         # its daemon answers, else buildah)
#
# docker: `docker build` with the Dockerfile's own base (debian:bookworm-slim, pinned by digest at
# build time; apt-get installs hack/image/debian-packages.txt).
# buildah (no daemon): hack/image/base.sh makes the same Debian root with mmdebstrap, and `buildah
# build --isolation chroot` builds the same Dockerfile on it. pip in the build's RUN steps trusts the
# machine's CA bundle ($PIP_CERT, else $SSL_CERT_FILE, else Debian's), bind-mounted at build time only.
#
# Stamps (.tools/image/): the image is rebuilt only when the Dockerfile, .dockerignore, the lock,
# the files of the build context, the base digest, the tag, the engine or this script change, or
# the image is gone from the engine's store; otherwise this takes a second or two. The base digest
# is recorded in .tools/image/image.env and on the image (org.opencontainers.image.base.digest).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="$root/.tools/image"
bin="$root/.tools/bin"
# shellcheck source=SCRIPTDIR/versions.env
source "$here/versions.env"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
mkdir -p "$state" "$bin"

log() { printf '[image] %s\n' "$*" >&2; }
die() {
  printf '[image] error: %s\n' "$*" >&2
  exit 1
}

# The files of the build context that .dockerignore lets through (its allowlist), sorted: what the
# image is built from, hashed for the stamp. tests/image checks that every COPY source is covered.
CONTEXT_PATHS=(Dockerfile .dockerignore pyproject.toml requirements.lock README.md shipyard components
  pipelines serving ticket_routing feature_repo environments hack/image/debian-packages.txt
  hack/image/runtime_requirements.py)
context_files() {
  (cd "$root" && find "${CONTEXT_PATHS[@]}" \
    \( -name __pycache__ -o -name '*.egg-info' -o -path feature_repo/data \) -prune -o \
    -type f ! -name '*.py[cod]' ! -name '*.db' ! -name '*.sqlite' ! -name .DS_Store -print | LC_ALL=C sort)
}
context_hash() {
  (cd "$root" && context_files | while IFS= read -r f; do printf '%s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"; done) |
    sha256sum | cut -d' ' -f1
}

# The tag: components/images.py's COMPONENT_IMAGE (the package version), read from the venv.
image_tag() {
  if [[ -n ${IMAGE:-} ]]; then
    echo "$IMAGE"
    return
  fi
  local py="$root/.venv/bin/python"
  [[ -x $py ]] || die "no .venv: run 'make venv' (the tag comes from components/images.py), or set IMAGE="
  (cd "$root" && "$py" -c 'from components.images import COMPONENT_IMAGE; print(COMPONENT_IMAGE)')
}

docker_daemon() { command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; }

engine() {
  case ${IMAGE_ENGINE:-} in
    docker | buildah) echo "$IMAGE_ENGINE" ;;
    "") if docker_daemon; then echo docker; else echo buildah; fi ;;
    *) die "IMAGE_ENGINE must be docker or buildah, not '$IMAGE_ENGINE'" ;;
  esac
}

# image_id ENGINE REF -> the ID of REF in that engine's store (fails when absent).
image_id() {
  case $1 in
    docker) docker image inspect --format '{{.Id}}' "$2" 2>/dev/null ;;
    buildah) buildah inspect --type image --format '{{.FromImageID}}' "$2" 2>/dev/null ;;
  esac
}

# --- tools: Debian's container tools and crane ----------------------------------------------------
APT_TOOLS=(buildah podman skopeo runc mmdebstrap uidmap)
install_tools() {
  local missing=() p
  for p in "${APT_TOOLS[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      log "installing Debian's ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      log "note: missing ${missing[*]} and not root: the buildah path and the image tests need them (apt-get install ${APT_TOOLS[*]})"
    fi
  else
    log "Debian's ${APT_TOOLS[*]} are installed"
  fi
  build_crane
}

build_crane() {
  local GO="${GO:-$(command -v go || true)}"
  [[ -n $GO ]] || { [[ -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go; } || {
    log "note: Go not found: crane (the tests' loopback registry) is not built; the registry test will skip"
    return 0
  }
  local v=$CRANE_VERSION module=github.com/google/go-containerregistry
  local want
  want="$v $({
    echo "$v $("$GO" env GOVERSION)"
    sed -n '/^build_crane()/,/^}/p' "$here/build.sh"
  } | sha256sum | cut -d' ' -f1)"
  if [[ -z ${FORCE:-} && -x $bin/crane && -f $root/.tools/stamps/crane && "$(cat "$root/.tools/stamps/crane")" == "$want" ]]; then
    log "crane $v is up to date"
    return 0
  fi
  log "building crane $v from the Go module proxy (cold: ~20-60 s)"
  local started=$SECONDS tmp
  tmp="$(mktemp -d "$root/.tools/crane-build.XXXXXX")"
  # go-containerregistry's go.mod has no replace directives: `go install module@version` builds it
  # against its own go.sum; the binary reports the module version (`crane version`).
  GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$tmp" \
    "$GO" install -trimpath -ldflags "-s -w" "$module/cmd/crane@$v" || {
    rm -rf "$tmp"
    die "building $module/cmd/crane@$v failed (see above)"
  }
  mv -f "$tmp/crane" "$bin/crane"
  rm -rf "$tmp"
  mkdir -p "$root/.tools/stamps"
  echo "$want" >"$root/.tools/stamps/crane"
  log "built $bin/crane in $((SECONDS - started))s"
}

# --- the image -------------------------------------------------------------------------------------
build_image() {
  local tag eng
  tag="$(image_tag)"
  eng="$(engine)"
  local version=${tag##*:}
  local started=$SECONDS base_ref base_digest
  case $eng in
    docker)
      local base="docker.io/library/debian:$DEBIAN_SUITE-slim"
      image_id docker "$base" >/dev/null || docker pull --quiet "$base" >/dev/null
      base_ref="$(docker image inspect --format '{{index .RepoDigests 0}}' "$base")" ||
        die "cannot read the digest of $base"
      ;;
    buildah)
      local tool
      for tool in buildah mmdebstrap; do
        command -v "$tool" >/dev/null || die "no docker daemon and no $tool: run 'make image-tools' (Debian's buildah, podman, skopeo, runc, mmdebstrap, uidmap)"
      done
      base_ref="$(bash "$here/base.sh")"
      ;;
  esac
  base_digest=${base_ref#*@}

  local want
  want="$({
    echo "$tag $eng $base_ref"
    cat "$here/build.sh"
    context_hash
  } | sha256sum | cut -d' ' -f1)"
  local id
  if [[ -z ${FORCE:-} && -f $state/image.stamp && "$(cat "$state/image.stamp")" == "$want" ]] &&
    id="$(image_id "$eng" "$tag")" && [[ $id == "$(cat "$state/image.id" 2>/dev/null)" ]]; then
    log "$tag is up to date ($eng, ${id:0:19}, base $base_ref)"
    return 0
  fi

  log "building $tag with $eng on $base_ref (cold: ~4-5 min on 2 busy cores; only changed layers rebuild)"
  rm -f "$state/image.stamp"
  case $eng in
    docker)
      docker build \
        --build-arg BASE="$base_ref" --build-arg BASE_DIGEST="$base_digest" --build-arg VERSION="$version" \
        -t "$tag" -f "$root/Dockerfile" "$root"
      ;;
    buildah)
      local ca="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}" ca_args=()
      if [[ -f $ca ]]; then
        ca_args=(--build-arg PIP_CERT=/run/shipyard-build-ca.pem -v "$ca:/run/shipyard-build-ca.pem:ro")
      fi
      buildah build --isolation chroot --layers --pull=never \
        --build-arg BASE="$base_ref" --build-arg BASE_DIGEST="$base_digest" --build-arg VERSION="$version" \
        "${ca_args[@]}" -t "$tag" -f "$root/Dockerfile" "$root"
      ;;
  esac
  id="$(image_id "$eng" "$tag")" || die "the build finished but $tag is not in $eng's store"
  echo "$id" >"$state/image.id"
  {
    echo "IMAGE=$tag"
    echo "IMAGE_ID=$id"
    echo "IMAGE_ENGINE=$eng"
    echo "BASE_REF=$base_ref"
    echo "BASE_DIGEST=$base_digest"
  } >"$state/image.env"
  echo "$want" >"$state/image.stamp"
  local size=""
  case $eng in
    docker) size="$(docker image inspect --format '{{.Size}}' "$tag")" ;;
    buildah) size="$(podman image inspect --format '{{.Size}}' "$tag" 2>/dev/null || true)" ;;
  esac
  log "built $tag (${id:0:19}${size:+, $((size / 1000000)) MB}) in $((SECONDS - started))s; base $base_ref"
}

case ${1:-image} in
  tools) install_tools ;;
  crane) build_crane ;;
  base) bash "$here/base.sh" ;;
  image) build_image ;;
  context-files) context_files ;;
  *) die "unknown step '$1' (tools | crane | base | image | context-files)" ;;
esac
