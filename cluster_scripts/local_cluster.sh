#!/usr/bin/env bash
# A Spark standalone master and N workers on 127.0.0.1, from the pyspark that the project's
# Python imports, so that the daemons and the driver run the same Spark version.
#
#   local_cluster.sh up N [--cores C] [--memory M] [--port P] [--webui-port W]
#                         [--timeout S] [--dir D]
#   local_cluster.sh status [--dir D]
#   local_cluster.sh down [--dir D]
#
# State lives in the run directory (default: <repo>/.tools/spark-cluster): master.pid,
# worker-1.pid ... worker-N.pid, one log per daemon, cluster.env with the settings. Each daemon
# runs in its own session, so its PID is also its process-group id: `kill -- -PID` stops a
# worker together with its executors and their Python workers (what a failure test wants).
#
# `up` waits until the master reports N alive workers (or fails with the logs' last lines,
# stopping what it started) and starts again any worker that has died since; `status` exits 1
# when no master runs; `down` stops exactly the processes in the pid files, and is fine when
# nothing runs.
#
# Environment: TILESCAN_PYTHON (default <repo>/.venv/bin/python) picks the Python, hence the
# pyspark; SPARK_MASTER_PORT and SPARK_MASTER_WEBUI_PORT give defaults for --port and
# --webui-port, as they do for Spark's own sbin scripts.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO
readonly HOST=127.0.0.1
readonly MASTER_CLASS=org.apache.spark.deploy.master.Master
readonly WORKER_CLASS=org.apache.spark.deploy.worker.Worker

usage() {
    sed -n '5,8p' "${BASH_SOURCE[0]}" | sed 's/^#   //' >&2
    exit 2
}

die() {
    echo "local_cluster: error: $*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Processes

# True when PID runs the given Spark daemon class: a stale pid file whose number the kernel has
# since given to another process must never get that process killed.
is_daemon() {
    local pid=$1 class=$2
    # -ww: the class name comes after a long classpath, past any default column limit.
    [[ -n $pid ]] && ps -ww -o args= -p "$pid" 2>/dev/null | grep -qF -- "$class"
}

pid_of() {
    local file=$1
    if [[ -f $file ]]; then
        cat "$file"
    fi
}

# Stops the daemon recorded in a pid file (its whole process group) and removes the file.
stop_daemon() {
    local file=$1 class=$2 pid
    pid=$(pid_of "$file")
    if is_daemon "$pid" "$class"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        local waited=0
        while kill -0 "$pid" 2>/dev/null && ((waited < 150)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "local_cluster: $(basename "$file" .pid) (pid $pid) ignored TERM; killing" >&2
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "stopped $(basename "$file" .pid) (pid $pid)"
    fi
    rm -f "$file"
}

# Starts one daemon in the background in its own session and records its PID.
start_daemon() {
    local name=$1
    shift
    # setsid: the daemon must not die with this shell, nor get a terminal's signals.
    setsid nohup "$SPARK_HOME/bin/spark-class" "$@" >"$RUN_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$name.pid"
}

log_tails() {
    local log
    for log in "$RUN_DIR"/*.log; do
        [[ -f $log ]] || continue
        echo "----- last lines of $log -----" >&2
        tail -n 25 "$log" >&2
    done
}

# ---------------------------------------------------------------------------------------------
# The master's JSON view

master_json() {
    curl -fsS --max-time 5 "http://$HOST:$WEBUI_PORT/json/"
}

# Reads the master's JSON on stdin; prints one field or, with "workers", one line per alive
# worker.
json_field() {
    "$PYTHON" -c '
import json, sys
state = json.load(sys.stdin)
if sys.argv[1] == "workers":
    for w in state["workers"]:
        if w["state"] == "ALIVE":
            print("  %s  cores %s  memory %s MiB" % (w["id"], w["cores"], w["memory"]))
else:
    print(state[sys.argv[1]])
' "$1"
}

alive_workers() {
    local json count
    # Not answering yet, or answering before its state is ready (an empty page): none alive yet.
    if json=$(master_json 2>/dev/null) && count=$(json_field aliveworkers <<<"$json" 2>/dev/null); then
        echo "$count"
    else
        echo 0
    fi
}

# ---------------------------------------------------------------------------------------------
# Commands

load_state() {
    [[ -f $RUN_DIR/cluster.env ]] || return 1
    # shellcheck source=/dev/null
    source "$RUN_DIR/cluster.env"
}

# A cluster this `up` started and that did not come up is stopped (its logs stay): nothing is
# left running for the user to find and stop.
fail_up() {
    log_tails
    ((FRESH)) && cmd_down >/dev/null
    die "$@"
}

cmd_up() {
    FRESH=0
    if is_daemon "$(pid_of "$RUN_DIR/master.pid")" "$MASTER_CLASS"; then
        local want_port=$PORT want_webui=$WEBUI_PORT want_workers=$WORKERS
        local want_cores=$CORES want_memory=$MEMORY
        load_state || die "master is running but $RUN_DIR/cluster.env is missing; run down first"
        if [[ "$PORT $WEBUI_PORT $WORKERS $CORES $MEMORY" != \
            "$want_port $want_webui $want_workers $want_cores $want_memory" ]]; then
            die "a cluster is already up in $RUN_DIR with other settings" \
                "(port $PORT, web UI $WEBUI_PORT, $WORKERS workers of $CORES cores and" \
                "$MEMORY); run down first"
        fi
    else
        # Leftovers of a cluster whose master died would register with the new master.
        cmd_down >/dev/null
        port_free "$PORT" || die "port $PORT on $HOST is in use (choose one with --port)"
        port_free "$WEBUI_PORT" ||
            die "port $WEBUI_PORT on $HOST is in use (choose one with --webui-port)"
        mkdir -p "$RUN_DIR"
        printf 'PORT=%q\nWEBUI_PORT=%q\nWORKERS=%q\nCORES=%q\nMEMORY=%q\n' \
            "$PORT" "$WEBUI_PORT" "$WORKERS" "$CORES" "$MEMORY" >"$RUN_DIR/cluster.env"
        # maxRetries=0: Spark would otherwise bind the next free port quietly, and the URL
        # that this script reports would be wrong.
        SPARK_MASTER_OPTS="${SPARK_MASTER_OPTS:-} -Dspark.port.maxRetries=0" \
            start_daemon master "$MASTER_CLASS" \
            --host "$HOST" --port "$PORT" --webui-port "$WEBUI_PORT"
        FRESH=1
    fi

    local i started=0
    for ((i = 1; i <= WORKERS; i++)); do
        if ! is_daemon "$(pid_of "$RUN_DIR/worker-$i.pid")" "$WORKER_CLASS"; then
            mkdir -p "$RUN_DIR/work/worker-$i"
            # --webui-port 0: each worker's UI on a free port, so that N workers never collide.
            start_daemon "worker-$i" "$WORKER_CLASS" \
                --host "$HOST" --cores "$CORES" --memory "$MEMORY" --webui-port 0 \
                --work-dir "$RUN_DIR/work/worker-$i" "spark://$HOST:$PORT"
            started=$((started + 1))
        fi
    done
    if ((started == 0)); then
        echo "already up: spark://$HOST:$PORT with $WORKERS workers ($RUN_DIR)"
        return 0
    fi

    local deadline=$((SECONDS + TIMEOUT)) alive=0
    while ((SECONDS < deadline)); do
        alive=$(alive_workers)
        ((alive >= WORKERS)) && break
        local name class
        for name in master $(seq -f 'worker-%g' 1 "$WORKERS"); do
            class=$WORKER_CLASS
            [[ $name == master ]] && class=$MASTER_CLASS
            if ! is_daemon "$(pid_of "$RUN_DIR/$name.pid")" "$class"; then
                fail_up "$name exited while the cluster was starting (logs in $RUN_DIR)"
            fi
        done
        sleep 0.5
    done
    if ((alive < WORKERS)); then
        fail_up "$alive of $WORKERS workers alive after ${TIMEOUT}s (logs in $RUN_DIR)"
    fi
    echo "up: spark://$HOST:$PORT with $WORKERS workers of $CORES cores and $MEMORY" \
        "(web UI http://$HOST:$WEBUI_PORT, state in $RUN_DIR)"
}

cmd_status() {
    if ! load_state || ! is_daemon "$(pid_of "$RUN_DIR/master.pid")" "$MASTER_CLASS"; then
        echo "not running ($RUN_DIR)"
        return 1
    fi
    local json
    json=$(master_json) || die "master (pid $(pid_of "$RUN_DIR/master.pid")) does not answer" \
        "on http://$HOST:$WEBUI_PORT/json/"
    echo "master: spark://$HOST:$PORT (pid $(pid_of "$RUN_DIR/master.pid")," \
        "web UI http://$HOST:$WEBUI_PORT)"
    echo "alive workers: $(json_field aliveworkers <<<"$json") of $WORKERS started"
    json_field workers <<<"$json"
    echo "driver: PYSPARK_PYTHON=$PYTHON spark-submit --master spark://$HOST:$PORT ..."
}

cmd_down() {
    local file
    # Workers first, so that none of them spends its last seconds reconnecting to the master.
    for file in "$RUN_DIR"/worker-*.pid; do
        [[ -f $file ]] && stop_daemon "$file" "$WORKER_CLASS"
    done
    stop_daemon "$RUN_DIR/master.pid" "$MASTER_CLASS"
    rm -f "$RUN_DIR/cluster.env"
}

port_free() {
    # A successful connect means somebody listens there already.
    ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# Arguments

require_int() {
    local name=$1 value=$2 min=$3 max=$4
    if [[ $value =~ ^[0-9]{1,9}$ ]] && ((10#$value >= min && 10#$value <= max)); then
        return 0
    fi
    die "$name must be an integer from $min to $max, got '$value'"
}

main() {
    (($# >= 1)) || usage
    local command=$1
    shift
    case $command in
        up | status | down) ;;
        *) usage ;;
    esac
    WORKERS=
    CORES=1
    MEMORY=1g
    PORT=${SPARK_MASTER_PORT:-7077}
    WEBUI_PORT=${SPARK_MASTER_WEBUI_PORT:-8080}
    TIMEOUT=90
    RUN_DIR=$REPO/.tools/spark-cluster
    if [[ $command == up ]]; then
        if (($# == 0)) || [[ $1 == -* ]]; then
            die "up needs the number of workers first, e.g. 'up 2 --cores 1'"
        fi
        WORKERS=$1
        shift
        require_int "N (workers)" "$WORKERS" 1 1000
    fi
    while (($#)); do
        (($# >= 2)) || die "option $1 needs a value"
        case $1 in
            --cores) CORES=$2 ;;
            --memory) MEMORY=$2 ;;
            --port) PORT=$2 ;;
            --webui-port) WEBUI_PORT=$2 ;;
            --timeout) TIMEOUT=$2 ;;
            --dir) RUN_DIR=$2 ;;
            *) die "unknown option '$1'" ;;
        esac
        shift 2
    done
    require_int --cores "$CORES" 1 1024
    [[ $MEMORY =~ ^[0-9]+[mMgG]$ ]] || die "--memory must look like 512m or 2g, got '$MEMORY'"
    # Spark binds no port below 1024.
    require_int --port "$PORT" 1024 65535
    require_int --webui-port "$WEBUI_PORT" 1024 65535
    ((PORT != WEBUI_PORT)) || die "--port and --webui-port must differ, both are $PORT"
    require_int --timeout "$TIMEOUT" 1 3600

    if [[ ! -d $RUN_DIR ]]; then
        # Nothing was ever started there: nothing to stop or to report.
        [[ $command == down ]] && return 0
        [[ $command == status ]] && { echo "not running ($RUN_DIR)"; return 1; }
        mkdir -p "$RUN_DIR"
    fi
    RUN_DIR=$(cd "$RUN_DIR" && pwd)
    [[ $command == down ]] && { cmd_down; return 0; }

    PYTHON=${TILESCAN_PYTHON:-$REPO/.venv/bin/python}
    [[ -x $PYTHON ]] || die "no Python at $PYTHON (set TILESCAN_PYTHON, or run make setup)"
    # Absolute, and not resolved through symlinks: a venv's python must stay the venv's.
    PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")
    SPARK_HOME=$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))') ||
        die "$PYTHON cannot import pyspark"
    export SPARK_HOME SPARK_LOCAL_IP=$HOST PYSPARK_PYTHON=$PYTHON

    if [[ $command == up ]]; then
        cmd_up
    else
        cmd_status
    fi
}

main "$@"
