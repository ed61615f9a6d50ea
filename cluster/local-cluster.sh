#!/usr/bin/env bash
# A real two-node Ray cluster on this machine, for tests and for trying `workers=N` by address.
#
#   cluster/local-cluster.sh start    # head + a second raylet on 127.0.0.1; prints the address
#   cluster/local-cluster.sh status   # address, token file and the PIDs this script started
#   cluster/local-cluster.sh env      # the lines a driver needs: eval "$(... env)"
#   cluster/local-cluster.sh stop     # stops what `start` started, by PID, and nothing else
#
# Then, in the driver's shell: eval "$(cluster/local-cluster.sh env)" and
# LaunchConfig(workers=2, address="127.0.0.1:6390").
#
# Why it looks like this:
# - Never `ray stop`: it kills every Ray process on the host, other people's included. Each
#   node runs as `ray start --block` in a session of its own; SIGTERM to that process makes
#   Ray tear down the node's daemons, and whatever is left in that session is killed by PID.
# - Token auth, one token for both nodes: Ray cannot be kept to loopback. Its GCS and
#   raylets listen on every interface, and it replaces --node-ip-address=127.0.0.1 by the
#   host's own address (services.resolve_ip_for_localhost), where the Ray Client server
#   and the agents then listen. Whoever reaches these ports could run code as this user
#   if auth were off. `start` writes a fresh random token to a file only this user
#   can read ($GT_RAY_DIR/auth_token, mode 600) and both nodes read it through
#   RAY_AUTH_TOKEN_PATH (each node generating its own would keep the second from joining).
#   The token is never printed, logged or put on a command line; a driver that attaches
#   needs RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH (`env` prints both), and one without
#   them is refused.
# - No dashboard (it runs jobs for whoever reaches it). Drivers attach by 127.0.0.1.
# - Its own ports and temp dir, so it does not collide with another Ray on the host, and a
#   small object store: Ray sizes it at 30% of RAM by default.
#
# Environment (all optional):
#   GT_RAY_PORT          head GCS port                        (6390)
#   GT_RAY_CLIENT_PORT   Ray Client server port on the head   (GT_RAY_PORT + 1)
#   GT_RAY_HEAD_CPUS     CPUs the head offers to tasks        (1)
#   GT_RAY_NODE_CPUS     CPUs the second node offers          (1)
#   GT_RAY_OBJECT_STORE  object store bytes per node          (314572800 = 300 MB)
#   GT_RAY_DIR           state, token, logs and Ray temp dir  (/tmp/gtray-$UID-$GT_RAY_PORT)
#   RAY                  the `ray` executable                 (the venv's, else `ray`)
set -euo pipefail

PORT="${GT_RAY_PORT:-6390}"
CLIENT_PORT="${GT_RAY_CLIENT_PORT:-$((PORT + 1))}"
HEAD_CPUS="${GT_RAY_HEAD_CPUS:-1}"
NODE_CPUS="${GT_RAY_NODE_CPUS:-1}"
OBJECT_STORE="${GT_RAY_OBJECT_STORE:-314572800}"
# Short on purpose: Ray puts Unix sockets under it and socket paths are limited to 107 bytes.
DIR="${GT_RAY_DIR:-/tmp/gtray-$(id -u)-$PORT}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${RAY:-}" ]]; then
  if [[ -x "$HERE/../.venv/bin/ray" ]]; then RAY="$HERE/../.venv/bin/ray"; else RAY=ray; fi
fi
ADDRESS="127.0.0.1:$PORT"
TOKEN_FILE="$DIR/auth_token"
START_TIMEOUT_S="${GT_RAY_START_TIMEOUT_S:-60}"

export RAY_AUTH_MODE=token
# A RAY_AUTH_TOKEN inherited from the caller would win over the file (Ray reads the
# variable first): the nodes must use the token `start` made, and only that one.
unset RAY_AUTH_TOKEN
export RAY_AUTH_TOKEN_PATH="$TOKEN_FILE"
export RAY_USAGE_STATS_ENABLED=0
# On SIGTERM a node first "drains" for up to 30 s, waiting on detached actors (Ray Train
# leaves one per run); a throwaway test cluster has nothing to drain.
export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="${RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S:-0}"

log() { echo "local-cluster: $*" >&2; }

alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

# The recorded PID of node $1, only while it is still our `ray start --block` (a stale
# file must not make us signal a process that reused the PID).
pid_of() {
  local pid
  [[ -f "$DIR/$1.pid" ]] || return 0
  pid="$(cat "$DIR/$1.pid")"
  if ps -o args= -p "$pid" 2>/dev/null | grep -q -- "start --block"; then echo "$pid"; fi
}

# The PID of a node just started: right after the fork its command line may not read
# "ray start --block" yet, so pid_of would see nothing for a moment; wait up to 5 s.
started_pid() {
  local i pid
  for ((i = 0; i < 50; i++)); do
    pid="$(pid_of "$1")"
    [[ -n "$pid" ]] && { echo "$pid"; return 0; }
    sleep 0.1
  done
  cat "$DIR/$1.pid" 2>/dev/null || true
}

# Waits until the node process logs that its runtime started, or dies. (Polling `ray status`
# instead costs a second or more per call, and much longer while the GCS is not up yet.)
wait_started() {
  local pid="$1" name="$2" deadline=$((SECONDS + START_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    if ! alive "$pid"; then
      log "$name exited during start-up; see $DIR/$name.log"
      tail -n 5 "$DIR/$name.log" >&2 || true
      return 1
    fi
    grep -q "Ray runtime started" "$DIR/$name.log" 2>/dev/null && return 0
    sleep 0.2
  done
  log "$name did not start within ${START_TIMEOUT_S}s; see $DIR/$name.log"
  return 1
}

# A fresh random token in a file only this user can read; nothing of it is printed.
new_token() {
  local tmp="$TOKEN_FILE.tmp.$$"
  (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$tmp")
  chmod 600 "$tmp"
  mv -f "$tmp" "$TOKEN_FILE"
}

# The shell lines a driver needs to attach (the token's path, never the token).
driver_env() {
  echo "export RAY_AUTH_MODE=token"
  echo "export RAY_AUTH_TOKEN_PATH=$TOKEN_FILE"
  echo "unset RAY_AUTH_TOKEN"
}

# Starts one node as `ray start --block` in its own session; records the PID.
start_node() {
  local name="$1"; shift
  setsid "$RAY" start --block --node-ip-address=127.0.0.1 --disable-usage-stats \
    --object-store-memory="$OBJECT_STORE" "$@" >"$DIR/$name.log" 2>&1 < /dev/null &
  echo $! >"$DIR/$name.pid"
}

# Every PID in the session led by $1 (the node process and what Ray forked under it).
session_pids() { ps -e -o pid=,sid= | awk -v s="$1" '$2 == s && $1 != s {print $1}'; }

# SIGTERM makes `ray start --block` tear down its node's daemons. Both nodes get it at
# once (each takes ~2-3 s); whatever is left in their sessions after that is killed by PID.
cmd_stop() {
  local name pid pids="" leaders="" i p
  for name in node2 head; do
    pid="$(pid_of "$name")"
    if alive "$pid"; then
      pids="$pids $(session_pids "$pid")"
      leaders="$leaders $pid"
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for ((i = 0; i < 60; i++)); do
    local any=0
    for pid in $leaders; do alive "$pid" && any=1; done
    ((any)) || break
    sleep 0.25
  done
  for pid in $leaders; do pids="$pids $pid $(session_pids "$pid")"; done
  for p in $pids; do
    if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
  done
  rm -f "$DIR/head.pid" "$DIR/node2.pid" "$DIR/address" "$TOKEN_FILE"
  log "stopped"
}

cmd_start() {
  (umask 077 && mkdir -p "$DIR")
  chmod 700 "$DIR"
  if alive "$(pid_of head)"; then
    log "already running; a driver attaches with: $(driver_env | tr '\n' ';')"
    echo "$ADDRESS"
    return 0
  fi
  rm -rf "$DIR/tmp"
  mkdir -p "$DIR/tmp"
  new_token
  start_node head --head --port="$PORT" --ray-client-server-port="$CLIENT_PORT" \
    --include-dashboard=false --num-cpus="$HEAD_CPUS" --num-gpus=0 --temp-dir="$DIR/tmp"
  if ! wait_started "$(started_pid head)" head; then cmd_stop; return 1; fi
  start_node node2 --address="$ADDRESS" --num-cpus="$NODE_CPUS" --num-gpus=0
  if ! wait_started "$(started_pid node2)" node2; then cmd_stop; return 1; fi
  echo "$ADDRESS" >"$DIR/address"
  log "2 nodes up (head pid $(pid_of head), node2 pid $(pid_of node2)); logs in $DIR"
  log "token auth on; a driver attaches with: $(driver_env | tr '\n' ';')"
  echo "$ADDRESS"
}

cmd_status() {
  local name pid up=0
  for name in head node2; do
    pid="$(pid_of "$name")"
    if alive "$pid"; then echo "$name pid $pid running"; up=$((up + 1)); else echo "$name not running"; fi
  done
  echo "address $ADDRESS"
  if [[ -f "$TOKEN_FILE" ]]; then
    echo "auth token file $TOKEN_FILE (mode 600; a driver attaches with:)"
    driver_env | sed 's/^/  /'
  fi
  ((up == 2))
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) driver_env ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
