#!/usr/bin/env bash
# BeforeInstall: check the host is prepared and give Install an empty staging directory.
# shellcheck source=codedeploy/hooks/lib.sh
. "$(dirname "$0")/lib.sh"
require_prepared_host
rm -rf "$STAGING"
install -d -m 0700 -o root -g root "$STAGING"
log "staging ready for ${APP_NAME} ${APP_VERSION}"
