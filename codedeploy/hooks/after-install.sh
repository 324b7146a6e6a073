#!/usr/bin/env bash
# AfterInstall: put the artifact where an Ansible deployment puts it and install it as a release
# (verified against its sha256; already installed from the same artifact: no change).
# shellcheck source=codedeploy/hooks/lib.sh
. "$(dirname "$0")/lib.sh"
require_prepared_host
app_root=$(setting APP_ROOT)
expected=$(cut -d ' ' -f 1 "$STAGING/$ARTIFACT_NAME.sha256")
# The app role creates artifacts/ (0700); only a host it did not fully prepare lacks it.
[ -d "$app_root/artifacts" ] || install -d -m 0700 -o root -g root "$app_root/artifacts"
install -m 0600 -o root -g root "$STAGING/$ARTIFACT_NAME" "$app_root/artifacts/$ARTIFACT_NAME"
log "installing release ${APP_VERSION}"
"$HELPER" install "$APP_VERSION" "$app_root/artifacts/$ARTIFACT_NAME" --sha256 "$expected"
