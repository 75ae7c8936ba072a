#!/usr/bin/env bash
# gpuq's benchmarks, side by side with the machine's ceiling and the notes' own design.
#
#   bench/run.sh [--quick] [--no-build] [--only ceiling,api,queue,durable,baseline,switch]
#
#   (d) ceiling   wrk GET against a minimal static-response Beast server (bench/ceiling)
#   (b) API       wrk GET /task_status/{id} and POST /submit_task against `gpuq serve --no-agent`,
#                 daemon RSS idle and after
#   (a) queue     N echo tasks over HTTP (64 connections) while the agent completes them
#       durable   K submits, kill -9 right after the K-th 200, restart, every 200'd id still there
#   (e) baseline  FastAPI + uvicorn (2 workers) + Redis from ../shared/baselines/fastapi-notes
#       switch    GPU service swaps by the real agent on a sim GPU: time from claim to healthy
#                 beyond the service's own 2 s start-up, next to the notes' fixed waits
#
# Environment: GPUQ_BENCH_DURATION (wrk -d, default 10s; --quick: 3s), GPUQ_BENCH_TASKS
# (default 20000; --quick: 5000), GPUQ_BENCH_CONNECTIONS (64), GPUQ_BENCH_THREADS (wrk -t, 2),
# GPUQ_BENCH_DURABLE_TASKS (2000), GPUQ_BENCH_BUILD_DIR (build), GPUQ_BENCH_BASELINE_DIR,
# GPUQ_BENCH_QUEUE_AGENT (embedded: the agent inside `gpuq serve`; separate: `gpuq agent`),
# GPUQ_BENCH_CPU_WORKERS (the agent's CPU pool for the queue run, 32),
# GPUQ_BENCH_SWITCHES (swaps measured, 40; --quick: 10),
# GPUQ_BENCH_ROUNDS (rounds of the wrk runs of (d), (b) and (e), each server back to back in
# every round; the table shows each one's median round. 3; --quick: 1),
# GPUQ_BENCH_KEEP=1 keeps the temp folder (logs, raw wrk output).
# Exit status: 0 when every measured gpuq target passed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
QUICK=0
BUILD_IT=1
ONLY=ceiling,api,queue,durable,baseline,switch
while (($#)); do
  arg=$1
  shift
  case "$arg" in
    --quick) QUICK=1 ;;
    --no-build) BUILD_IT=0 ;;
    --only) ONLY=${1:?--only needs a list}; shift ;;
    --only=*) ONLY=${arg#--only=} ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg (try --help)" >&2; exit 2 ;;
  esac
done
want() { [[ ,$ONLY, == *,$1,* ]]; }
if ((QUICK)); then DEFAULT_DURATION=3s DEFAULT_TASKS=5000; else DEFAULT_DURATION=10s DEFAULT_TASKS=20000; fi
DURATION=${GPUQ_BENCH_DURATION:-$DEFAULT_DURATION}
TASKS=${GPUQ_BENCH_TASKS:-$DEFAULT_TASKS}
CONNS=${GPUQ_BENCH_CONNECTIONS:-64}
WRK_THREADS=${GPUQ_BENCH_THREADS:-2}
DURABLE_TASKS=${GPUQ_BENCH_DURABLE_TASKS:-2000}
if ((QUICK)); then DEFAULT_SWITCHES=10; else DEFAULT_SWITCHES=40; fi
SWITCHES=${GPUQ_BENCH_SWITCHES:-$DEFAULT_SWITCHES}
if ((QUICK)); then DEFAULT_ROUNDS=1; else DEFAULT_ROUNDS=3; fi
ROUNDS=${GPUQ_BENCH_ROUNDS:-$DEFAULT_ROUNDS}
BUILD=${GPUQ_BENCH_BUILD_DIR:-$ROOT/build}
BASELINE_DIR=$(realpath -m "${GPUQ_BENCH_BASELINE_DIR:-$ROOT/../shared/baselines/fastapi-notes}")
SYS_PY=/usr/bin/python3  # Debian's interpreter: the baseline's packages are Debian's

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpuq-bench.XXXXXX")
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
: >"$RESULTS/notes.txt"

log() { printf '== %s\n' "$*" >&2; }
note() { printf '%s\n' "$*" >>"$RESULTS/notes.txt"; log "$*"; }

# ---- processes: every server this script starts is recorded here and stopped by PID ----------
PIDS=()

descendants() {  # PIDs of a process's children, grandchildren, ...
  local pid=$1 child
  for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

stop_pid() {  # TERM a process we started (and what it forked), KILL after 5 s
  local pid=$1 kids i
  kill -0 "$pid" 2>/dev/null || return 0
  kids=$(descendants "$pid")
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  for k in $kids; do kill -0 "$k" 2>/dev/null && kill -KILL "$k" 2>/dev/null; done
  return 0
}

forget_pid() {
  local pid=$1 p keep=()
  for p in "${PIDS[@]}"; do [[ $p != "$pid" ]] && keep+=("$p"); done
  PIDS=("${keep[@]}")
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [[ ${GPUQ_BENCH_KEEP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() {  # start LOGNAME CMD...: runs CMD in the background; sets STARTED_PID
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

stop() { stop_pid "$1"; forget_pid "$1"; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() {  # wait_http PID URL: until URL answers any HTTP status (20 s), while PID lives
  local pid=$1 url=$2 i
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    curl -s -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.1
  done
  return 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' /proc/"$1"/status 2>/dev/null; }

submit_one() {  # submit_one BASE_URL BODY: prints the task_id of one submitted task
  curl -s --max-time 5 -H 'Content-Type: application/json' -d "$2" "$1/submit_task" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])' 2>/dev/null
}

run_wrk() {  # run_wrk NAME URL [LUA]: wrk output into results/wrk-NAME.txt
  local name=$1 url=$2 lua=${3:-}
  local args=(-t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency)
  [[ -n $lua ]] && args+=(-s "$lua")
  log "wrk $name: ${args[*]} $url"
  wrk "${args[@]}" "$url" >"$RESULTS/wrk-$name.txt" 2>&1
  grep -E 'Requests/sec|^ +(50|99)%|Non-2xx|Socket errors' "$RESULTS/wrk-$name.txt" | sed 's/^/   /' >&2
}

# ---- tools -------------------------------------------------------------------------------------
ensure_packages() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v curl >/dev/null || missing+=(curl)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v python3 >/dev/null || missing+=(python3)
  if [[ -d $BASELINE_DIR ]]; then
    local mod pkg
    for pkg in fastapi uvicorn redis uvloop httptools; do
      mod=$pkg
      "$SYS_PY" -c "import $mod" 2>/dev/null || missing+=("python3-$pkg")
    done
  fi
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]}"
  if [[ $(id -u) != 0 ]]; then
    echo "missing: ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y "${missing[@]}" >"$WORK/apt.log" 2>&1 ||
    { apt-get update >>"$WORK/apt.log" 2>&1 && apt-get install -y "${missing[@]}" >>"$WORK/apt.log" 2>&1; } ||
    { cat "$WORK/apt.log" >&2; echo "apt-get install ${missing[*]} failed" >&2; exit 1; }
}

ensure_packages

GPUQ_OK=0
if ((BUILD_IT)); then
  log "building (Release) in $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGPUQ_BUILD_BENCH=ON \
    >"$WORK/cmake.log" 2>&1 || { cat "$WORK/cmake.log" >&2; exit 1; }
  ninja -C "$BUILD" gpuq_bench_ceiling gpuq_bench_submit_drain gpuq_bench_durability gpuq_bench_switch \
    >"$WORK/ninja-bench.log" 2>&1 || { tail -40 "$WORK/ninja-bench.log" >&2; exit 1; }
  if ninja -C "$BUILD" gpuq >"$WORK/ninja-gpuq.log" 2>&1; then GPUQ_OK=1; else
    tail -20 "$WORK/ninja-gpuq.log" >&2
    note "gpuq: does not build; its rows were not run"
  fi
else
  [[ -x $BUILD/src/bin/gpuq || -x $BUILD/gpuq ]] && GPUQ_OK=1
  ((GPUQ_OK)) || note "gpuq: no binary in $BUILD (--no-build); its rows were not run"
fi
GPUQ=$BUILD/gpuq
[[ -x $GPUQ ]] || GPUQ=$BUILD/src/bin/gpuq
if ((GPUQ_OK)) && [[ ! -x $GPUQ ]]; then
  GPUQ_OK=0
  note "gpuq: built, but no binary at $BUILD/gpuq or $BUILD/src/bin/gpuq"
fi
CEILING_BIN=$BUILD/bench/gpuq_bench_ceiling
DRAIN_BIN=$BUILD/bench/gpuq_bench_submit_drain
DURABLE_BIN=$BUILD/bench/gpuq_bench_durability

log "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
log "wrk -t$WRK_THREADS -c$CONNS -d$DURATION; queue: $TASKS tasks"

# ---- (d) the ceiling: a minimal static-response Beast server ------------------------------------
CEILING_URL=""
if want ceiling; then
  start ceiling "$CEILING_BIN" --host 127.0.0.1 --port 0
  CEILING_PID=$STARTED_PID
  for ((i = 0; i < 100; i++)); do
    CEILING_PORT=$(head -n1 "$WORK/ceiling.log" 2>/dev/null)
    [[ $CEILING_PORT =~ ^[0-9]+$ ]] && break
    sleep 0.05
  done
  if [[ $CEILING_PORT =~ ^[0-9]+$ ]]; then
    CEILING_URL="http://127.0.0.1:$CEILING_PORT/task_status/00000000-0000-4000-8000-000000000000"
  else
    note "ceiling: server did not start ($(tail -n1 "$WORK/ceiling.log"))"
    stop "$CEILING_PID"
  fi
fi

# ---- (e) the notes' design: FastAPI + uvicorn (2 workers) + Redis ------------------------------
BASE_URL=""
BASE_ID=""
if ! want baseline; then
  :
elif [[ -f $BASELINE_DIR/server.py ]]; then
  REDIS_PORT=$(free_port)
  start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no
  REDIS_PID=$STARTED_PID
  BASE_PORT=$(free_port)
  start uvicorn env REDIS_PORT="$REDIS_PORT" "$SYS_PY" -m uvicorn server:app \
    --app-dir "$BASELINE_DIR" --host 127.0.0.1 --port "$BASE_PORT" --workers 2 \
    --no-access-log --log-level warning
  UVICORN_PID=$STARTED_PID
  BASE_URL="http://127.0.0.1:$BASE_PORT"
  if wait_http "$UVICORN_PID" "$BASE_URL/task_status/none"; then
    for ((i = 0; i < 50; i++)); do  # both workers up and Redis reachable
      BASE_ID=$(submit_one "$BASE_URL" '{"task_type":"noop","priority":5,"payload":{"n":1}}')
      [[ -n $BASE_ID ]] && break
      sleep 0.2
    done
  fi
  if [[ -n $BASE_ID ]]; then
    sleep 1  # let the second worker finish starting
  else
    note "baseline: did not come up: $(tail -n3 "$WORK/uvicorn.log" | tr '\n' ' ')"
    stop "$UVICORN_PID"
    stop "$REDIS_PID"
    BASE_URL=""
  fi
else
  note "baseline: not available ($BASELINE_DIR missing)"
fi

# ---- gpuq helpers ------------------------------------------------------------------------------
start_gpuq() {  # start_gpuq NAME DATA_DIR [ARGS...]: sets GPUQ_PID, GPUQ_PORT
  local name=$1 dir=$2
  shift 2
  GPUQ_PORT=$(free_port)
  start "$name" "$GPUQ" serve --listen "127.0.0.1:$GPUQ_PORT" --data-dir "$dir" "$@"
  GPUQ_PID=$STARTED_PID
  if ! wait_http "$GPUQ_PID" "http://127.0.0.1:$GPUQ_PORT/health"; then
    note "gpuq ($name): did not come up: $(tail -n3 "$WORK/$name.log" | tr '\n' ' ')"
    stop "$GPUQ_PID"
    return 1
  fi
}

GPUQ_API=""
ID=""
if ((GPUQ_OK)); then
  # ---- (b) API + (c) RSS, in rounds beside (d) and (e) -----------------------------------------
  # This host's speed drifts by ±20% within minutes: each round measures every server back to
  # back, and the table takes the median round of each (report.py), so a slow minute weighs on
  # gpuq and on what it is compared with alike.
  if want api && start_gpuq gpuq-api "$WORK/data-api" --no-agent; then
    GPUQ_API=$GPUQ_PID
    sleep 1
    rss_kb "$GPUQ_PID" >"$RESULTS/rss-idle.kb"
    ID=$(submit_one "http://127.0.0.1:$GPUQ_PORT" '{"task_type":"echo","priority":50,"payload":{"n":1}}')
    [[ -n $ID ]] || note "gpuq: POST /submit_task did not return a task_id"
  fi
fi
for ((round = 1; round <= ROUNDS; round++)); do
  log "round $round of $ROUNDS"
  [[ -n $CEILING_URL ]] && run_wrk "ceiling-get-r$round" "$CEILING_URL"
  if [[ -n $GPUQ_API && -n $ID ]]; then
    run_wrk "gpuq-get-r$round" "http://127.0.0.1:$GPUQ_PORT/task_status/$ID"
  fi
  [[ -n $BASE_URL ]] && run_wrk "baseline-get-r$round" "$BASE_URL/task_status/$BASE_ID"
  if [[ -n $GPUQ_API ]]; then
    run_wrk "gpuq-post-r$round" "http://127.0.0.1:$GPUQ_PORT/submit_task" "$BENCH/wrk/submit.lua"
  fi
  [[ -n $BASE_URL ]] && run_wrk "baseline-post-r$round" "$BASE_URL/submit_task" "$BASELINE_DIR/submit.lua"
done
if [[ -n $GPUQ_API ]]; then
  rss_kb "$GPUQ_API" >"$RESULTS/rss-after.kb"
  stop "$GPUQ_API"
fi
[[ -n $CEILING_URL ]] && stop "$CEILING_PID"
if [[ -n $BASE_URL ]]; then
  stop "$UVICORN_PID"
  stop "$REDIS_PID"
fi

if ((GPUQ_OK)); then
  # ---- (a) queue: submit and drain with the agent ---------------------------------------------
  # The agent runs inside `gpuq serve` by default; GPUQ_BENCH_QUEUE_AGENT=separate runs
  # `gpuq serve --no-agent` plus one `gpuq agent` process on the same data dir.
  # Echo runs take microseconds, so the agent's CPU pool is sized for many at once
  # (GPUQ_BENCH_CPU_WORKERS, default 32; the daemon's own default of 4 suits real commands).
  QUEUE_AGENT=${GPUQ_BENCH_QUEUE_AGENT:-embedded}
  CPU_WORKERS=${GPUQ_BENCH_CPU_WORKERS:-32}
  QUEUE_ARGS=(--cpu-workers "$CPU_WORKERS")
  [[ $QUEUE_AGENT == separate ]] && QUEUE_ARGS=(--no-agent)
  if want queue && start_gpuq gpuq-queue "$WORK/data-queue" "${QUEUE_ARGS[@]}"; then
    AGENT_PID=""
    if [[ $QUEUE_AGENT == separate ]]; then
      start gpuq-agent "$GPUQ" agent --data-dir "$WORK/data-queue" --cpu-workers "$CPU_WORKERS"
      AGENT_PID=$STARTED_PID
    fi
    log "queue: $TASKS echo tasks on $CONNS connections, agent $QUEUE_AGENT, $CPU_WORKERS CPU workers"
    "$DRAIN_BIN" --port "$GPUQ_PORT" --tasks "$TASKS" --connections "$CONNS" \
      >"$RESULTS/queue.json" 2>"$WORK/queue.err"
    cat "$RESULTS/queue.json" "$WORK/queue.err" | sed 's/^/   /' >&2
    [[ -n $AGENT_PID ]] && stop "$AGENT_PID"
    stop "$GPUQ_PID"
  fi

  # ---- durability: kill -9 right after the K-th 200, restart, look every id up ----------------
  if want durable && start_gpuq gpuq-durable "$WORK/data-durable" --no-agent; then
    log "durability: $DURABLE_TASKS submits, then kill -9"
    KILLED_PID=$GPUQ_PID
    {  # bash reports the SIGKILLed job ("Killed") on this stderr: keep it out of the output
      "$DURABLE_BIN" load --port "$GPUQ_PORT" --pid "$KILLED_PID" --count "$DURABLE_TASKS" \
        --connections "$CONNS" --ids-out "$WORK/durable.ids" >"$WORK/durable-load.txt" 2>&1
      stop "$KILLED_PID"  # already dead after a successful load step; reaps it
    } 2>>"$WORK/shell.log"
    sed 's/^/   /' "$WORK/durable-load.txt" >&2
    if [[ -s $WORK/durable.ids ]] && start_gpuq gpuq-durable-restart "$WORK/data-durable" --no-agent; then
      "$DURABLE_BIN" verify --port "$GPUQ_PORT" --ids-in "$WORK/durable.ids" \
        --connections "$CONNS" >"$RESULTS/durability.txt" 2>"$WORK/durable-verify.err"
      cat "$RESULTS/durability.txt" "$WORK/durable-verify.err" | sed 's/^/   /' >&2
      stop "$GPUQ_PID"
    else
      echo "durable: 0/0 (load step failed)" >"$RESULTS/durability.txt"
    fi
  fi
fi

# ---- switch overhead: the agent swapping two fake services on a sim GPU -----------------------
SWITCH_STATUS=0
if want switch; then
  "$BUILD/bench/gpuq_bench_switch" --fake "$BUILD/gpuq-fake-service" --swaps "$SWITCHES" \
    --startup-ms 2000 >"$RESULTS/switch.txt" 2>"$WORK/switch.log"
  SWITCH_STATUS=$?
  ((SWITCH_STATUS == 0 || SWITCH_STATUS == 3)) || tail -5 "$WORK/switch.log" >&2
fi

# ---- the table ---------------------------------------------------------------------------------
echo
echo "gpuq benchmarks: $(nproc) cores, wrk -t$WRK_THREADS -c$CONNS -d$DURATION on the same box," \
  "queue $TASKS echo tasks (agent: ${GPUQ_BENCH_QUEUE_AGENT:-embedded}), durability $DURABLE_TASKS submits"
python3 "$BENCH/report.py" "$RESULTS"
status=$?
if [[ -s $RESULTS/switch.txt ]]; then
  echo
  cat "$RESULTS/switch.txt"
fi
((SWITCH_STATUS == 0)) || status=1
((GPUQ_OK)) || status=1  # nothing of gpuq was measured: not a pass
exit $status
