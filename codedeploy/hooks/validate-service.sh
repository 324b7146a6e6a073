#!/usr/bin/env bash
# ValidateService: the same health gate as an Ansible deployment (/health answers 200 with this
# version), then prune old releases. A failure fails the deployment; the deployment group's
# automatic rollback redeploys the previous revision (the hooks then reactivate it).
# shellcheck source=codedeploy/hooks/lib.sh
. "$(dirname "$0")/lib.sh"
require_prepared_host
timeout=$(setting APP_HEALTH_TIMEOUT)
log "health gate for ${APP_VERSION}"
"$HELPER" health "$APP_VERSION" --timeout "${timeout:-60}"
"$HELPER" prune
log "release ${APP_VERSION} is live"
