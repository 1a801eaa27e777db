# shellcheck shell=bash
# Shared helpers for scripts/kafka, scripts/prometheus and scripts/alertmanager. Source it; do not
# run it.

# Repository root (the parent of scripts/), independent of the caller's working directory.
DW_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DW_SCRIPTS_DIR="${DW_REPO_ROOT}/scripts"
export DW_REPO_ROOT DW_SCRIPTS_DIR

dw_log() { printf '[%s] %s\n' "${DW_NAME:-dw}" "$*" >&2; }

dw_die() {
  printf '[%s] ERROR: %s\n' "${DW_NAME:-dw}" "$*" >&2
  exit 1
}

# Milliseconds since the epoch (for timing and deadlines).
dw_now_ms() { date +%s%3N; }

# dw_port_open HOST PORT: true when something accepts TCP connections there.
dw_port_open() {
  local host="$1" port="$2"
  # The subshell owns fd 3, so it is closed again when the subshell exits.
  (exec 3<>"/dev/tcp/${host}/${port}") 2>/dev/null
}

# dw_cmdline_has PID PATTERN: true when process PID is alive and its command line contains PATTERN.
dw_cmdline_has() {
  local pid="$1" pattern="$2" args=()
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  # Builtins only (no fork per process): the argv words, NUL-separated in /proc.
  mapfile -d '' -t args 2>/dev/null <"/proc/${pid}/cmdline" || return 1
  [[ "${args[*]}" == *"$pattern"* ]]
}

# dw_pid_alive PIDFILE PATTERN: prints the pid and succeeds when our service is running. PIDFILE is
# checked first (its process must still have PATTERN in its command line, against recycled pids).
# Without a valid PIDFILE (e.g. target/ was wiped under a running service), processes whose command
# line contains PATTERN, which names our own config file path, are looked for; the first found is
# written back to PIDFILE.
dw_pid_alive() {
  local pidfile="$1" pattern="$2" pid f
  if [[ -s "$pidfile" ]]; then
    pid="$(<"$pidfile")"
    if dw_cmdline_has "$pid" "$pattern"; then
      printf '%s\n' "$pid"
      return 0
    fi
    rm -f "$pidfile"
  fi
  for f in /proc/[0-9]*; do
    pid="${f#/proc/}"
    ((pid != $$ && pid != BASHPID)) || continue
    if dw_cmdline_has "$pid" "$pattern"; then
      mkdir -p "$(dirname "$pidfile")"
      printf '%s\n' "$pid" >"$pidfile"
      printf '%s\n' "$pid"
      return 0
    fi
  done
  return 1
}

# dw_stop_pid PID TIMEOUT_S: SIGTERM, wait up to TIMEOUT_S, then SIGKILL. Returns when it is gone:
# 0 when it exited after SIGTERM (or was already gone), 2 when it needed SIGKILL.
dw_stop_pid() {
  local pid="$1" timeout_s="$2" deadline
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$(($(dw_now_ms) + timeout_s * 1000))
  while kill -0 "$pid" 2>/dev/null; do
    # A zombie (our own child not yet reaped) counts as gone.
    if [[ "$(ps -o stat= -p "$pid" 2>/dev/null || true)" == Z* ]]; then return 0; fi
    if (($(dw_now_ms) > deadline)); then
      dw_log "pid ${pid} still running after ${timeout_s}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      return 2
    fi
    sleep 0.1
  done
}

# dw_lock LOCKFILE: serialise start/stop of one service between concurrent callers.
dw_lock() {
  local lockfile="$1"
  mkdir -p "$(dirname "$lockfile")"
  exec 9>"$lockfile"
  if command -v flock >/dev/null 2>&1; then
    flock -w 120 9 || dw_die "could not take lock ${lockfile} within 120s"
  fi
}

# dw_tail_log FILE [N]: print the last N lines of FILE to stderr, framed.
dw_tail_log() {
  local file="$1" n="${2:-60}"
  if [[ -f "$file" ]]; then
    printf -- '----- last %s lines of %s -----\n' "$n" "$file" >&2
    tail -n "$n" "$file" >&2 || true
    printf -- '----- end of %s -----\n' "$file" >&2
  else
    printf -- '(no log file at %s)\n' "$file" >&2
  fi
}

# dw_apt_install PACKAGE: installs a Debian package with apt-get (needs root) without letting its
# maintainer scripts start the service it ships (matters where there is a SysV init script but no
# systemd): /usr/sbin/policy-rc.d answers 101, "action forbidden", while it installs, and is only
# removed again if it was made here.
dw_apt_install() {
  local package="$1" policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
  local log="/tmp/driftwatch-${package}-apt.$$.log"
  command -v apt-get >/dev/null 2>&1 || dw_die "${package} is not installed and there is no apt-get"
  [[ "$(id -u)" == 0 ]] || dw_die "${package} is not installed; installing it needs root (apt-get)"
  dw_log "installing Debian package '${package}' (apt-get)"
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  {
    apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$package"
  } >"$log" 2>&1 || rc=$?
  if ((made_policy)); then rm -f "$policy"; fi
  if ((rc != 0)); then
    tail -n 40 "$log" >&2
    dw_die "apt-get install ${package} failed (rc ${rc})"
  fi
  rm -f "$log"
}

# dw_stop_package_daemon USER PROGRAM: stops the PROGRAM processes run by USER (a daemon that a
# package started anyway): it would hold the default port and is not ours. Matched on the command
# line, since process names are cut at 15 characters.
dw_stop_package_daemon() {
  local user="$1" program="$2" pid
  for pid in $(pgrep -u "$user" -f "^(/usr/bin/)?${program}( |$)" 2>/dev/null || true); do
    dw_log "stopping the ${program} daemon started by the Debian package (pid ${pid})"
    dw_stop_pid "$pid" 10 || true
  done
}
