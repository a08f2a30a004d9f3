#!/usr/bin/env bash
# The image's base without a Docker daemon: a Debian root filesystem made by mmdebstrap from Debian's
# own packages (hack/image/debian-packages.txt: bookworm's python3.11 + venv, CA certificates),
# imported into local container storage with `buildah from scratch`. The Dockerfile's base stage
# installs the same packages with apt-get on debian:bookworm-slim, so the docker and the buildah paths
# differ only in how the Debian root is fetched.
#
#   bash hack/image/base.sh          # build unless the recorded base is current; prints its reference
#   FORCE=1 bash hack/image/base.sh  # rebuild
#
# Writes .tools/image/base.ref ("<name>@<digest>", what the image build uses and records) and a stamp
# that holds a hash of this script and its inputs, so a rerun is instant while the image exists.
# Like debian:bookworm-slim, documentation, man pages and locales are left out (dpkg path-exclude,
# kept in the root filesystem so later installs leave them out too); apt lists are removed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="$root/.tools/image"
# shellcheck source=SCRIPTDIR/versions.env
source "$here/versions.env"
# buildah/podman read their settings from here (runtime, cgroups, ulimits of this kind of VM).
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"

log() { printf '[image-base] %s\n' "$*" >&2; }
die() {
  printf '[image-base] error: %s\n' "$*" >&2
  exit 1
}

for tool in mmdebstrap buildah; do
  command -v "$tool" >/dev/null || die "$tool not found (make image-tools installs Debian's buildah, podman, skopeo, runc, mmdebstrap, uidmap)"
done
[[ $(id -u) == 0 ]] || die "mmdebstrap's root mode and buildah's local storage need root here"

packages="$(grep -vE '^[[:space:]]*(#|$)' "$here/debian-packages.txt" | paste -sd, -)"
tag="$BASE_NAME:$DEBIAN_SUITE"
want="$({
  echo "$tag $packages $BASE_SOURCE_DATE_EPOCH $(mmdebstrap --version) $(buildah --version)"
  cat "$here/base.sh" "$here/debian-packages.txt"
} | sha256sum | cut -d' ' -f1)"
mkdir -p "$state"

current_ref() { # the recorded reference, when its image is still in local storage
  [[ -f $state/base.ref ]] || return 1
  local ref
  ref="$(cat "$state/base.ref")"
  buildah inspect --type image "$ref" >/dev/null 2>&1 || return 1
  echo "$ref"
}

if [[ -z ${FORCE:-} && -f $state/base.stamp && "$(cat "$state/base.stamp")" == "$want" ]] && ref="$(current_ref)"; then
  log "up to date: $ref"
  echo "$ref"
  exit 0
fi

started=$SECONDS
work="$(mktemp -d "$state/base.XXXXXX")"
ctr=""
cleanup() {
  [[ -z $ctr ]] || buildah rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

log "mmdebstrap $DEBIAN_SUITE (minbase + $packages) from deb.debian.org (cold: ~1-2 min)"
# bookworm, its point-release updates and its security updates: the suites debian:bookworm-slim's
# apt sources name, so both paths install the same package versions on the same day.
# shellcheck disable=SC2016 # the hook's "$1" (the root) is expanded by mmdebstrap's shell, not here
SOURCE_DATE_EPOCH=$BASE_SOURCE_DATE_EPOCH mmdebstrap \
  --quiet \
  --mode=root \
  --variant=minbase \
  --include="$packages" \
  --aptopt='Acquire::Languages "none"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/groff/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/apt/* "$1"/var/log/dpkg.log' \
  "$DEBIAN_SUITE" "$work/rootfs.tar" \
  "deb http://deb.debian.org/debian $DEBIAN_SUITE main" \
  "deb http://deb.debian.org/debian $DEBIAN_SUITE-updates main" \
  "deb http://deb.debian.org/debian-security $DEBIAN_SUITE-security main" ||
  die "mmdebstrap failed (see above): is deb.debian.org reachable?"
log "root filesystem: $(du -h "$work/rootfs.tar" | cut -f1) after $((SECONDS - started))s; importing with buildah from scratch"

ctr="$(buildah from scratch)"
buildah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
# (awk reads to the end: exiting early would SIGPIPE tar and fail the pipeline under pipefail)
python_version="$(tar -xOf "$work/rootfs.tar" ./var/lib/dpkg/status |
  awk '/^Package: python3.11-minimal$/{p=1} p && !v && /^Version:/{v=$2} END{print v}')"
buildah config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 \
  --cmd /bin/bash \
  --label org.opencontainers.image.title="Shipyard base: Debian $DEBIAN_SUITE + python3.11 (mmdebstrap)" \
  --label org.opencontainers.image.description="Debian packages: $packages" \
  --label io.shipyard.base.python="$python_version" \
  --created-by "hack/image/base.sh (mmdebstrap $DEBIAN_SUITE: $packages)" \
  "$ctr"
buildah commit --quiet --rm --timestamp "$BASE_SOURCE_DATE_EPOCH" "$ctr" "$tag" >/dev/null
ctr=""
digest="$(buildah inspect --type image --format '{{.FromImageDigest}}' "$tag")"
[[ $digest == sha256:* ]] || die "could not read the digest of $tag (got '$digest')"
echo "$BASE_NAME@$digest" >"$state/base.ref"
echo "$want" >"$state/base.stamp"
log "built $tag = $BASE_NAME@$digest (python3.11 $python_version) in $((SECONDS - started))s"
cat "$state/base.ref"
