#!/usr/bin/env bash
# Commits an environment's release record to the branch as the GitHub Actions bot and pushes it: what
# the staging workflow does after `shipyard --env staging release propose` (staging is promoted by the
# merge that triggered the run; only prod needs a pull request). The commit holds the record and the
# evidence files it names (a record's evidence must be a file in the repository: `release check`
# verifies its hash), nothing else. A push that lost a race with another push to the branch is rebased
# and retried (3 tries).
#
#   hack/ci/commit-record.sh ENV BODY_FILE [EVIDENCE_FILE...]   # BODY_FILE: propose's --body-out ("" for none)
#
# Prints the commit's SHA (the record's commit, or HEAD when the record did not change) and sets the
# step output `sha`. The checkout's credentials must be allowed to push to the branch (RECORD_BRANCH,
# default main; with branch protection: a GitHub App or token allowed to bypass it).
set -euo pipefail

die() {
  printf '[commit-record] error: %s\n' "$*" >&2
  exit 1
}
env="${1:?usage: commit-record.sh ENV BODY_FILE [EVIDENCE_FILE...]}"
body="${2:-}"
shift $(($# < 2 ? $# : 2))
extra=("$@")
branch="${RECORD_BRANCH:-main}"
record="manifests/overlays/$env/release.yaml"

cd "$(git rev-parse --show-toplevel)"
[[ -f $record ]] || die "no $record: run 'shipyard --env $env release propose' first"
[[ -z $body || -f $body ]] || die "no body file $body"
for f in "${extra[@]}"; do
  [[ -f $f ]] || die "no evidence file $f"
done
paths=("$record" "${extra[@]}")

output() {
  echo "$1"
  if [[ -n ${GITHUB_OUTPUT:-} ]]; then echo "sha=$1" >>"$GITHUB_OUTPUT"; fi
}

if [[ -z "$(git status --porcelain -- "${paths[@]}")" ]]; then
  printf '[commit-record] %s is unchanged: nothing to commit\n' "${paths[*]}" >&2
  output "$(git rev-parse HEAD)"
  exit 0
fi

git config user.name "github-actions[bot]"
git config user.email "41898282+github-actions[bot]@users.noreply.github.com"
msg="$(mktemp)"
trap 'rm -f "$msg"' EXIT
{
  echo "release($env): record for ${GITHUB_SHA:-$(git rev-parse HEAD)}"
  if [[ -n $body ]]; then
    echo
    cat "$body"
  fi
} >"$msg"
git add -- "${paths[@]}"
git commit --quiet --file "$msg" -- "${paths[@]}"

for attempt in 1 2 3; do
  if git push --quiet origin "HEAD:refs/heads/$branch"; then
    printf '[commit-record] pushed %s to %s\n' "${paths[*]}" "$branch" >&2
    output "$(git rev-parse HEAD)"
    exit 0
  fi
  ((attempt < 3)) || break
  printf '[commit-record] push rejected (attempt %d): rebasing onto origin/%s\n' "$attempt" "$branch" >&2
  git fetch --quiet origin "$branch"
  git rebase --quiet "origin/$branch" || {
    git rebase --abort || true
    die "$record conflicts with a newer commit on $branch: rerun the workflow from the new head"
  }
done
die "could not push to $branch after 3 attempts"
