#!/bin/sh
# Lints the CI templates and pipeline scripts with real linters:
#   actionlint and check-jsonschema (vendor.github-workflows) on
#     ci/templates/github-actions.yml,
#   check-jsonschema (vendor.gitlab-ci) on ci/templates/gitlab-ci.yml,
#   shellcheck on ci/pipeline/*.sh.
# Then it checks that the linters are real: each must reject a broken copy
# of a template (a job output read from a job not in `needs`, an unknown
# job key, a misspelt GitLab keyword).
#
# Usage: ci/lint-ci.sh   (the tools come from ci/python-tools.txt, which
# .ci/run installs into /opt/applbuild-tools)
set -eu
cd "$(dirname "$0")/.."
PATH=/opt/applbuild-tools/bin:$PATH
github=ci/templates/github-actions.yml
gitlab=ci/templates/gitlab-ci.yml
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

actionlint "$github"
echo "ok: actionlint $github"
check-jsonschema --builtin-schema vendor.github-workflows "$github"
check-jsonschema --builtin-schema vendor.gitlab-ci "$gitlab"
shellcheck -x -s sh ci/pipeline/*.sh
echo "ok: shellcheck ci/pipeline/*.sh"

# Each broken copy must fail its linter; "$1" is the linter command, the
# file comes last.
expect_failure() {
	description=$1
	shift
	if "$@" > "$work/log" 2>&1; then
		echo "FAILED: the linter accepted $description: $*" >&2
		exit 1
	fi
	echo "ok: rejected $description: $(grep -m 1 -E 'error|is not|not defined|Additional properties' "$work/log" || head -n 1 "$work/log")"
}

sed 's/needs: \[kernels, build\]/needs: build/' "$github" > "$work/needs.yml"
! cmp -s "$github" "$work/needs.yml" || { echo "FAILED: the needs line to break was not found in $github" >&2; exit 1; }
expect_failure "a job reading needs.kernels without needing it" actionlint "$work/needs.yml"

sed 's/^    runs-on: ubuntu-latest$/    runs-on: ubuntu-latest\n    timeout: 10/' "$github" > "$work/key.yml"
expect_failure "an unknown job key (actionlint)" actionlint "$work/key.yml"
expect_failure "an unknown job key (schema)" check-jsonschema --builtin-schema vendor.github-workflows "$work/key.yml"

sed 's/^  stage: build$/  stagee: build/' "$gitlab" > "$work/gitlab.yml"
! cmp -s "$gitlab" "$work/gitlab.yml" || { echo "FAILED: the stage line to break was not found in $gitlab" >&2; exit 1; }
expect_failure "a misspelt GitLab keyword" check-jsonschema --builtin-schema vendor.gitlab-ci "$work/gitlab.yml"
