#!/usr/bin/env bash
# ApplicationStop (runs the PREVIOUS revision's copy; skipped on a host's first deployment).
# Nothing is stopped: the release switch in ApplicationStart is atomic and restarts the service,
# exactly as an Ansible deployment does, so the old release serves until then.
# shellcheck source=codedeploy/hooks/lib.sh
. "$(dirname "$0")/lib.sh"
require_prepared_host
log "current release: $("$HELPER" current 2>/dev/null || echo none); deploying ${APP_VERSION}"
