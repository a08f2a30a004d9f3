#!/usr/bin/env bash
# Pushes the image `make image` built (.tools/image/image.env) to $IMAGE_REPO:$GIT_SHA with crane
# (.tools/bin/crane, from `make image-tools`) and prints the pushed reference with its digest.
#
#   make image-push                                   # IMAGE_REPO from components/images.py, GIT_SHA = HEAD
#   make image-push IMAGE_REPO=localhost:5000/shipyard GIT_SHA=$(git rev-parse HEAD)
#
# Registry login: when REGISTRY_PASSWORD is set, `crane auth login <registry> -u $REGISTRY_USERNAME
# --password-stdin` first (the password goes through stdin, never the command line); otherwise the
# credentials crane already has (~/.docker/config.json) are used.
#
# The image leaves the engine's store as a `docker save` tarball (docker) or an OCI layout (buildah);
# crane pushes either. Output: stdout = `<repo>@sha256:...`; .tools/image/pushed.env (IMAGE_PUSHED,
# IMAGE_REF, IMAGE_DIGEST); in GitHub Actions also the step outputs `ref` and `digest`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="$root/.tools/image"
crane="${CRANE:-$root/.tools/bin/crane}"

log() { printf '[image-push] %s\n' "$*" >&2; }
die() {
  printf '[image-push] error: %s\n' "$*" >&2
  exit 1
}

[[ -n ${IMAGE_REPO:-} ]] || die "IMAGE_REPO is not set (make image-push sets it from components/images.py)"
[[ ${GIT_SHA:-} =~ ^[0-9a-f]{40}$ ]] || die "GIT_SHA must be a full 40-hex commit SHA, not '${GIT_SHA:-}'"
[[ -x $crane ]] || die "no $crane: run 'make image-tools' (builds crane from the Go module proxy)"
[[ -f $state/image.env ]] || die "no $state/image.env: run 'make image' first"
IMAGE="" IMAGE_ENGINE=""
# shellcheck source=/dev/null
source "$state/image.env"
[[ -n $IMAGE && -n $IMAGE_ENGINE ]] || die "$state/image.env names no image or engine: run 'make image'"

target="$IMAGE_REPO:$GIT_SHA"
registry="${IMAGE_REPO%%/*}"
if [[ -n ${REGISTRY_PASSWORD:-} ]]; then
  [[ -n ${REGISTRY_USERNAME:-} ]] || die "REGISTRY_PASSWORD is set but REGISTRY_USERNAME is not"
  "$crane" auth login "$registry" -u "$REGISTRY_USERNAME" --password-stdin <<<"$REGISTRY_PASSWORD" >/dev/null
  log "logged in to $registry as $REGISTRY_USERNAME"
fi

tmp="$(mktemp -d "$root/.tools/image-push.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
log "exporting $IMAGE from $IMAGE_ENGINE"
case $IMAGE_ENGINE in
  docker)
    docker save -o "$tmp/image.tar" "$IMAGE"
    src="$tmp/image.tar"
    ;;
  buildah)
    buildah push --quiet "$IMAGE" "oci:$tmp/layout:$GIT_SHA" >/dev/null
    src="$tmp/layout"
    ;;
  *) die "unknown IMAGE_ENGINE '$IMAGE_ENGINE' in $state/image.env" ;;
esac

log "pushing $target"
"$crane" push "$src" "$target" --image-refs "$tmp/refs" >/dev/null
ref="$(head -n1 "$tmp/refs")"
[[ $ref == *@sha256:* ]] || die "crane reported no digest for $target (got '$ref')"
digest="${ref##*@}"
{
  echo "IMAGE_PUSHED=$target"
  echo "IMAGE_REF=$IMAGE_REPO@$digest"
  echo "IMAGE_DIGEST=$digest"
} >"$state/pushed.env"
if [[ -n ${GITHUB_OUTPUT:-} ]]; then
  {
    echo "ref=$IMAGE_REPO@$digest"
    echo "digest=$digest"
  } >>"$GITHUB_OUTPUT"
fi
log "pushed $target ($digest)"
echo "$IMAGE_REPO@$digest"
