#!/usr/bin/env bash
# Run N cooperating processes of ltkd_jax.main on this host (one global JAX mesh over all of them).
#
# Usage: launch/local.sh N [--dry_run] [-- ARGS...]
#
#   N          number of processes (process ids 0 .. N-1)
#   --dry_run  print the N commands (one per line, shell-quoted) instead of running them
#   ARGS       forwarded verbatim to `python -m ltkd_jax.main`, e.g.
#              --config=configs/cifar100_lt.py:ltkd,resnet32x4-resnet8x4,100 --workdir=runs/c100
#
# Each process gets `--coordinator_address=127.0.0.1:PORT --num_processes=N --process_id=i` appended. Its
# output goes to <workdir>/process_<i>.log (appended); process 0's is also shown here. The launcher waits for
# all of them: if one fails, the others are stopped (SIGTERM, then SIGKILL after KILL_AFTER seconds) and its
# exit status is returned; SIGTERM / SIGINT sent to the launcher are forwarded to every process (the trainer
# saves a checkpoint and exits 143; rerunning the same command resumes).
#
# Environment:
#   PYTHON                interpreter (default: <repo>/.venv/bin/python if present, else python3)
#   PORT                  coordinator port on 127.0.0.1 (default: a free port)
#   LOG_DIR               where the process_<i>.log files go (default: the --workdir of ARGS, else workdirs/demo)
#   DEVICES_PER_PROCESS   CPU devices per process (adds --xla_force_host_platform_device_count to XLA_FLAGS)
#   KILL_AFTER            seconds the others get, after one process exited non-zero, before SIGKILL (10)
#   JAX_PLATFORMS         default cpu; cross-process collectives on CPU use gloo
#   JAX_CPU_COLLECTIVES_IMPLEMENTATION   default gloo (already JAX's default; set for older releases)
#   JAX_COORDINATOR_BIND_ADDRESS         default 127.0.0.1:PORT (the coordinator listens on loopback only)
#   LTKD_MAIN             python module to run instead of ltkd_jax.main (tests)
set -euo pipefail

PROG=local.sh

SCRIPT="${BASH_SOURCE[0]}"
[[ $SCRIPT == */* ]] && SCRIPT_DIR="${SCRIPT%/*}" || SCRIPT_DIR=.
# shellcheck source=common.sh disable=SC1091
source "$SCRIPT_DIR/common.sh"

N=""
DRY_RUN=0
ARGS=()
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --dry_run | --dry-run) DRY_RUN=1; shift ;;
        --) shift; ARGS=("$@"); break ;;
        -*) die "unknown option '$1' (arguments for ltkd_jax.main go after --)" ;;
        *)
            [[ -z $N ]] || die "unexpected argument '$1' (arguments for ltkd_jax.main go after --)"
            N=$1
            shift
            ;;
    esac
done
[[ -n $N ]] || die "missing N, the number of processes (usage: $PROG N [--dry_run] -- ARGS...)"
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, got '$N'"

WORKDIR=""
previous=""
for arg in "${ARGS[@]}"; do
    case $arg in
        --coordinator_address* | --num_processes* | --process_id* | --distributed | --distributed=* | --nodistributed)
            die "'$arg' is set by $PROG; remove it from the arguments" ;;
        --workdir=*) WORKDIR=${arg#--workdir=} ;;
    esac
    [[ $previous != --workdir ]] || WORKDIR=$arg
    previous=$arg
done

ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
PY=$(pick_python "$ROOT")
MODULE=${LTKD_MAIN:-ltkd_jax.main}
LOG_DIR=${LOG_DIR:-${WORKDIR:-workdirs/demo}}
[[ $LOG_DIR != *://* ]] || die "the logs cannot go to '$LOG_DIR'; set LOG_DIR to a local directory"
KILL_AFTER=${KILL_AFTER:-10}
[[ $KILL_AFTER =~ ^[0-9]+$ ]] || die "KILL_AFTER must be a number of seconds, got '$KILL_AFTER'"

free_port() {
    local py port
    for py in "$PY" python3; do
        if port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
            2>/dev/null); then
            printf '%s\n' "$port"
            return
        fi
    done
    printf '%s\n' $((20000 + RANDOM % 20000))
}
PORT=${PORT:-$(free_port)}
if ! [[ $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
    die "PORT must be a TCP port number, got '$PORT'"
fi

ENVIRONMENT=(
    "JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}"
    "JAX_CPU_COLLECTIVES_IMPLEMENTATION=${JAX_CPU_COLLECTIVES_IMPLEMENTATION:-gloo}"
    "JAX_COORDINATOR_BIND_ADDRESS=${JAX_COORDINATOR_BIND_ADDRESS:-127.0.0.1:$PORT}"
    "TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}"
)
if [[ -n ${DEVICES_PER_PROCESS:-} ]]; then
    [[ $DEVICES_PER_PROCESS =~ ^[1-9][0-9]*$ ]] || die "DEVICES_PER_PROCESS must be a positive integer"
    ENVIRONMENT+=("XLA_FLAGS=${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$DEVICES_PER_PROCESS")
fi

command_of() {  # the command line of process $1, into the array CMD
    CMD=(env "${ENVIRONMENT[@]}" "$PY" -m "$MODULE" "${ARGS[@]}" "--coordinator_address=127.0.0.1:$PORT"
        "--num_processes=$N" "--process_id=$1")
}

if ((DRY_RUN)); then
    for ((i = 0; i < N; i++)); do
        command_of "$i"
        quote "${CMD[@]}"
    done
    exit 0
fi

mkdir -p "$LOG_DIR" 2>/dev/null || die "cannot create the log directory '$LOG_DIR' (LOG_DIR, default the --workdir)"
PIDS=()
ALIVE=()
TEE_PID=""
STOPPING=0
KILL_AT=0

signal_all() {
    local i
    for ((i = 0; i < ${#PIDS[@]}; i++)); do
        if ((ALIVE[i])); then kill "-$1" "${PIDS[i]}" 2>/dev/null || true; fi
    done
}

# shellcheck disable=SC2317  # invoked by trap
forward() {  # SIGTERM / SIGINT to the launcher: pass SIGTERM on; a second one kills
    if ((STOPPING)); then
        signal_all KILL
    else
        STOPPING=1
        echo "$PROG: forwarding SIGTERM to the $N processes" >&2
        signal_all TERM
    fi
}
trap forward TERM INT
trap 'signal_all KILL' EXIT

for ((i = 0; i < N; i++)); do
    command_of "$i"
    log=$LOG_DIR/process_$i.log
    if ((i == 0)); then
        exec {TEE_FD}> >(tee -i -a "$log")
        TEE_PID=$!
        "${CMD[@]}" >&"$TEE_FD" 2>&1 &
        PIDS+=("$!")
        exec {TEE_FD}>&-
    else
        "${CMD[@]}" >>"$log" 2>&1 &
        PIDS+=("$!")
    fi
    ALIVE+=(1)
done
echo "$PROG: started $N processes (coordinator 127.0.0.1:$PORT); logs: $LOG_DIR/process_<i>.log" >&2

STATUS=0
remaining=$N
while ((remaining > 0)); do
    for ((i = 0; i < N; i++)); do
        ((ALIVE[i])) || continue
        if kill -0 "${PIDS[i]}" 2>/dev/null; then continue; fi
        rc=0
        wait "${PIDS[i]}" || rc=$?
        ALIVE[i]=0
        remaining=$((remaining - 1))
        if ((rc != 0 && STATUS == 0)); then
            STATUS=$rc
            # The others may be stuck in a collective with it: SIGTERM now (unless already sent), SIGKILL later.
            KILL_AT=$((SECONDS + KILL_AFTER))
            if ((!STOPPING)); then
                echo "$PROG: process $i failed (exit status $rc, log $LOG_DIR/process_$i.log); stopping the others" >&2
                STOPPING=1
                signal_all TERM
            fi
        fi
    done
    if ((KILL_AT && SECONDS >= KILL_AT)); then
        signal_all KILL
        KILL_AT=0
    fi
    ((remaining == 0)) || sleep 0.2
done
trap - EXIT
wait "$TEE_PID" 2>/dev/null || true
exit "$STATUS"
