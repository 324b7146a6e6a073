#!/usr/bin/env bash
# ApplicationStart: the service enabled (as the app role leaves it, so it survives a reboot),
# then the atomic switch of `current` to the new release and the service restart.
# shellcheck source=codedeploy/hooks/lib.sh
. "$(dirname "$0")/lib.sh"
require_prepared_host
systemctl enable --quiet "$(setting APP_SERVICE)"
log "activating release ${APP_VERSION}"
"$HELPER" activate "$APP_VERSION"
