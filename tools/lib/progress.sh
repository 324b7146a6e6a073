# shellcheck shell=bash
# Progress for the long tools (sourced by tools/fleet, tools/platform, tools/bootstrap): phase lines
# with the time since the command began, and a heartbeat while one step runs long (apt,
# debootstrap, pip), so a terminal or CI log is never silent for more than a few seconds.
# EC2FLEET_T0 carries the start time to child tools and to the Python side (ec2fleet.progress).
EC2FLEET_T0=${EC2FLEET_T0:-$(date +%s)}
export EC2FLEET_T0
EC2FLEET_HEARTBEAT=${EC2FLEET_HEARTBEAT:-5}

elapsed() {
  local s=$(( $(date +%s) - EC2FLEET_T0 ))
  printf '%d:%02d' $((s / 60)) $((s % 60))
}

# phase TEXT: one line on stderr, e.g. "[0:42] base image: ec2fleet/debian12:... is up to date"
phase() { printf '[%s] %s\n' "$(elapsed)" "$*" >&2; }

# with_heartbeat LABEL CMD...: runs CMD (its output goes where the caller sends it) and says on
# stderr every EC2FLEET_HEARTBEAT seconds that LABEL is still running; returns CMD's status.
with_heartbeat() {
  local label=$1 pid start next now rc
  shift
  start=$(date +%s)
  next=$(( start + EC2FLEET_HEARTBEAT ))
  "$@" &
  pid=$!
  # A background job ignores Ctrl-C: pass it on, so an interrupted tool leaves nothing running.
  trap 'kill -TERM "$pid" 2>/dev/null; exit 130' INT TERM
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    now=$(date +%s)
    if [ "$now" -ge "$next" ] && kill -0 "$pid" 2>/dev/null; then
      phase "$label: still running ($(( now - start ))s)"
      next=$(( now + EC2FLEET_HEARTBEAT ))
    fi
  done
  wait "$pid" && rc=0 || rc=$?
  trap - INT TERM
  return $rc
}
