#!/usr/bin/env bash
# Shared by the hooks: where the revision is, which release it carries, and the `app` role's
# release helper (/usr/local/sbin/<app_name>-release) that does the actual work.
set -euo pipefail

: "${LIFECYCLE_EVENT:?run by the CodeDeploy agent, which sets LIFECYCLE_EVENT}"
: "${DEPLOYMENT_ID:?run by the CodeDeploy agent, which sets DEPLOYMENT_ID}"

HOOKS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUNDLE_DIR=$(dirname "$HOOKS_DIR")
# The bundle's own copy of the release metadata (the hooks run from the deployment archive).
# shellcheck source=/dev/null
. "$BUNDLE_DIR/release/VERSION"
: "${APP_NAME:?release/VERSION must set APP_NAME}"
: "${APP_VERSION:?release/VERSION must set APP_VERSION}"

HELPER=/usr/local/sbin/${APP_NAME}-release
HELPER_SETTINGS=/etc/default/${APP_NAME}-release
# Where appspec.yml's files section puts release/ during Install.
# shellcheck disable=SC2034  # STAGING and ARTIFACT_NAME are for the hooks that source this file
STAGING=/var/lib/codedeploy-${APP_NAME}/revision
# shellcheck disable=SC2034  # likewise
ARTIFACT_NAME=${APP_NAME}-${APP_VERSION}.tar.gz

log() {
  echo "[$LIFECYCLE_EVENT ${DEPLOYMENT_ID} ${APPLICATION_NAME:-?}/${DEPLOYMENT_GROUP_NAME:-?}] $*" >&2
}

require_prepared_host() {
  # The `app` role (app_version: "") prepares every web host: user, layout, helper, unit.
  if [ ! -x "$HELPER" ] || [ ! -f "$HELPER_SETTINGS" ]; then
    log "host not prepared: $HELPER or $HELPER_SETTINGS missing (run site.yml with the app role first)"
    exit 1
  fi
}

setting() {  # setting KEY: a value from the helper's settings file
  sed -n "s/^$1=//p" "$HELPER_SETTINGS" | tail -n 1 | tr -d "'\""
}
