#!/usr/bin/env bash
# The checked-in schema's checks, run by the test command (needs client/node_modules):
# 1. the linter (client/eslint.config.mjs): naming, a description on every type and field; fails the run;
# 2. a breaking-change report of schema.graphql against the merge base with SCHEMA_BASE_REF (default
#    main; on main itself, against the previous commit): printed, so a breaking change is a decision.
set -euo pipefail
cd "$(dirname "$0")/.."
client/node_modules/.bin/eslint --config client/eslint.config.mjs schema.graphql
echo "schema lint: ok"

base_ref="${SCHEMA_BASE_REF:-main}"
base=""
if git rev-parse --verify -q HEAD >/dev/null 2>&1; then
  base="$(git merge-base HEAD "$base_ref" 2>/dev/null || true)"
  if [ "$base" = "$(git rev-parse HEAD)" ] && git diff --quiet HEAD -- schema.graphql; then
    base="$(git rev-parse -q --verify HEAD~1 2>/dev/null || true)"  # on the base branch: the last commit's change
  fi
fi
if [ -z "$base" ] || ! git cat-file -e "$base:schema.graphql" 2>/dev/null; then
  echo "schema changes: no earlier schema.graphql in this checkout to compare with"
  exit 0
fi
old="$(mktemp --suffix=.graphql)"
trap 'rm -f "$old"' EXIT
git show "$base:schema.graphql" >"$old"
echo "schema changes against $(git rev-parse --short "$base") ($base_ref merge base):"
# graphql-inspector exits 1 when it finds breaking changes: that is the report, not a failure.
set +e
client/node_modules/.bin/graphql-inspector diff "$old" schema.graphql
status=$?
set -e
if [ "$status" -gt 1 ]; then exit "$status"; fi
exit 0
