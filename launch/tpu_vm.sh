#!/usr/bin/env bash
# Run ltkd_jax on a Cloud TPU VM slice: create (or reuse) it, install the package on every worker, run one
# experiment or a sweep on all workers at once (`--distributed`: JAX finds the slice's hosts by itself).
#
# Usage: launch/tpu_vm.sh [OPTIONS] -- ARGS...        one run: `python -m ltkd_jax.main ARGS --distributed`
#                                                     (the -- may be left out when ARGS start with --config/--workdir)
#        launch/tpu_vm.sh [OPTIONS] --sweep=FILE      one run per line of FILE (same ARGS, shell-quoted; # comments)
#        launch/tpu_vm.sh [OPTIONS]                   only create the VM and install the package
#        launch/tpu_vm.sh [OPTIONS] --delete          only delete the VM
#
# Options [environment variable, default]:
#   --name=NAME           TPU VM name [TPU_NAME, ltkd]
#   --zone=ZONE           [ZONE, us-central2-b]
#   --accelerator=TYPE    slice, e.g. v4-8 (1 host), v4-32 (4 hosts), v5p-16, v5litepod-16 [ACCELERATOR, v4-32]
#   --version=VERSION     TPU software image [TPU_VERSION, tpu-ubuntu2204-base; v5e: v2-alpha-tpuv5-lite,
#                         v5p: v2-alpha-tpuv5, v6e: v2-alpha-tpuv6e]
#   --project=PROJECT     GCP project [PROJECT, gcloud's configured one]
#   --spot                create a Spot VM (preemptible; rerun the same command to recreate it and resume) [SPOT=1]
#   --repo=DIR            local checkout copied to every worker [REPO, this checkout]
#   --git=URL             clone URL on every worker instead of copying the checkout [GIT_URL]
#   --git_ref=REF         commit, tag or branch to check out with --git [GIT_REF, origin/HEAD]
#   --skip_setup          keep the code and environment already on the workers [SKIP_SETUP=1]
#   --sweep=FILE          run each non-empty, non-comment line of FILE as ARGS, one after the other
#   --detach              start the run(s) in the background on every worker (log: ~/ltkd_run.log) and return
#   --delete              delete the VM at the end (after the runs, if any)
#   --allow_local_workdir accept a --workdir that is not on GCS (a single-host slice, or a filesystem that every
#                         worker mounts); by default --workdir must be gs://... so that all workers share it
#   --dry_run             print every command (gcloud and local) instead of running it; needs no gcloud
# Environment only: REMOTE_DIR (code on the workers, relative to ~, ltkd_jax), REMOTE_VENV (~/ltkd_venv),
#   REMOTE_PYTHON_VERSION (3.11; uv installs it if the image lacks it), SETUP_CMD (replaces the install step).
#
# Example (ImageNet-LT, LTKD r34 -> r18, gamma 10, global batch 512, data and runs on GCS):
#   launch/tpu_vm.sh --name=ltkd-v4 --accelerator=v4-32 -- \
#       --config=configs/imagenet_lt.py:ltkd,resnet34-resnet18,10 --workdir=gs://BUCKET/runs/inet_ltkd_r34_r18_g10 \
#       --config.dataset.data_dir=gs://BUCKET/tensorflow_datasets --config.batch_size=512
set -euo pipefail

PROG=tpu_vm.sh

SCRIPT="${BASH_SOURCE[0]}"
[[ $SCRIPT == */* ]] && SCRIPT_DIR="${SCRIPT%/*}" || SCRIPT_DIR=.
# shellcheck source=common.sh disable=SC1091
source "$SCRIPT_DIR/common.sh"

TPU_NAME=${TPU_NAME:-ltkd}
ZONE=${ZONE:-us-central2-b}
ACCELERATOR=${ACCELERATOR:-v4-32}
TPU_VERSION=${TPU_VERSION:-tpu-ubuntu2204-base}
PROJECT=${PROJECT:-}
SPOT=${SPOT:-0}
REPO=${REPO:-}
GIT_URL=${GIT_URL:-}
GIT_REF=${GIT_REF:-origin/HEAD}
SKIP_SETUP=${SKIP_SETUP:-0}
REMOTE_DIR=${REMOTE_DIR:-ltkd_jax}
REMOTE_VENV=${REMOTE_VENV:-ltkd_venv}
REMOTE_PYTHON_VERSION=${REMOTE_PYTHON_VERSION:-3.11}
SETUP_CMD=${SETUP_CMD:-}
SWEEP=""
DETACH=0
DELETE=0
ALLOW_LOCAL_WORKDIR=0
DRY_RUN=0
HAVE_ARGS=0
ARGS=()

value_of() {  # --opt=VALUE -> VALUE, with a one-line error for an empty one
    [[ $1 == *=?* ]] || die "option '${1%%=*}' needs a value: ${1%%=*}=VALUE"
    printf '%s' "${1#*=}"
}

while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --name=*) TPU_NAME=$(value_of "$1") ;;
        --zone=*) ZONE=$(value_of "$1") ;;
        --accelerator=* | --accelerator-type=*) ACCELERATOR=$(value_of "$1") ;;
        --version=*) TPU_VERSION=$(value_of "$1") ;;
        --project=*) PROJECT=$(value_of "$1") ;;
        --spot) SPOT=1 ;;
        --repo=*) REPO=$(value_of "$1") ;;
        --git=*) GIT_URL=$(value_of "$1") ;;
        --git_ref=*) GIT_REF=$(value_of "$1") ;;
        --skip_setup) SKIP_SETUP=1 ;;
        --sweep=*) SWEEP=$(value_of "$1") ;;
        --detach) DETACH=1 ;;
        --delete) DELETE=1 ;;
        --allow_local_workdir) ALLOW_LOCAL_WORKDIR=1 ;;
        --dry_run | --dry-run) DRY_RUN=1 ;;
        --)
            shift
            ARGS=("$@")
            HAVE_ARGS=$((${#ARGS[@]} > 0))
            break
            ;;
        --config=* | --config.* | --workdir=* | --workdir)  # ltkd_jax.main's ARGS without the --
            ARGS=("$@")
            HAVE_ARGS=1
            break
            ;;
        --name | --zone | --accelerator | --version | --project | --repo | --git | --git_ref | --sweep)
            die "option '$1' needs a value: $1=VALUE" ;;
        *) die "unknown option '$1' (arguments for ltkd_jax.main go after --)" ;;
    esac
    shift
done

for flag in SPOT SKIP_SETUP; do
    [[ ${!flag} == 0 || ${!flag} == 1 ]] || die "$flag must be 0 or 1, got '${!flag}'"
done
[[ $TPU_NAME =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || die "TPU name '$TPU_NAME' is invalid (lower-case letters, digits, -)"
[[ $REMOTE_DIR =~ ^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$ && $REMOTE_DIR != . && $REMOTE_DIR != .. ]] ||
    die "REMOTE_DIR must be a plain path relative to the home directory, got '$REMOTE_DIR'"
[[ $REMOTE_VENV =~ ^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$ ]] ||
    die "REMOTE_VENV must be a plain path relative to the home directory, got '$REMOTE_VENV'"
if ((HAVE_ARGS)) && [[ -n $SWEEP ]]; then die "give either ARGS after -- or --sweep=FILE, not both"; fi
if ((DETACH && DELETE)); then die "--detach with --delete would delete the VM under the running job"; fi
if [[ -n $GIT_URL && -n $REPO ]]; then die "give either --repo (copy a checkout) or --git (clone), not both"; fi
if [[ -z $GIT_URL && $GIT_REF != origin/HEAD ]]; then
    die "--git_ref / GIT_REF='$GIT_REF' needs --git (a --repo checkout is copied as it is)"
fi
CHECKOUT=""  # the local checkout that will be copied to the workers (checked before any VM is created)
if [[ -z $GIT_URL ]] && ((!SKIP_SETUP)); then
    CHECKOUT=${REPO:-$SCRIPT_DIR/..}
    [[ -d $CHECKOUT ]] || die "REPO directory '$CHECKOUT' does not exist"
    CHECKOUT=$(cd "$CHECKOUT" && pwd)
    [[ -f $CHECKOUT/setup.cfg && -d $CHECKOUT/ltkd_jax ]] ||
        die "'$CHECKOUT' is not an ltkd_jax checkout (no setup.cfg / ltkd_jax/)"
fi

# The runs: each is the ARGS text for ltkd_jax.main, as the remote shell will read it.
RUNS=()
if ((HAVE_ARGS)); then
    RUNS+=("$(quote "${ARGS[@]}")")
elif [[ -n $SWEEP ]]; then
    [[ -f $SWEEP ]] || die "sweep file '$SWEEP' does not exist"
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
        line=${line#"${line%%[![:space:]]*}"}
        line=${line%"${line##*[![:space:]]}"}
        RUNS+=("$line")
    done <"$SWEEP"
    ((${#RUNS[@]})) || die "sweep file '$SWEEP' has no runs (one line of ltkd_jax.main arguments per run)"
fi

WORKDIR_RE='(^|[[:space:]])["'\'']?--workdir[=[:space:]]+["'\'']?([^"'\''[:space:]]*)'
CONFIG_RE='(^|[[:space:]])["'\'']?--config[=[:space:]]+["'\'']?([^"'\'':[:space:]]*)'
for run in "${RUNS[@]}"; do
    if [[ -n $CHECKOUT && $run =~ $CONFIG_RE ]]; then  # the copied checkout must hold the run's config file
        config_file=${BASH_REMATCH[2]}
        [[ $config_file == /* || -f $CHECKOUT/$config_file ]] ||
            die "config file '$config_file' is not in the checkout '$CHECKOUT' (paths are relative to it)"
    fi
    case $run in
        *--coordinator_address* | *--num_processes* | *--process_id* | *--nodistributed*)
            die "do not pass --coordinator_address / --num_processes / --process_id: the slice provides them" ;;
    esac
    if [[ $run =~ $WORKDIR_RE ]]; then
        workdir=${BASH_REMATCH[2]}
    else
        die "every run needs --workdir=gs://BUCKET/... (shared by all workers): missing in: $run"
    fi
    if [[ $workdir != gs://* ]] && ((!ALLOW_LOCAL_WORKDIR)); then
        die "--workdir=$workdir is not on GCS; every worker writes checkpoints there: use gs://BUCKET/... (or pass --allow_local_workdir for a single-host slice or a shared mount)"
    fi
done

if ((!DRY_RUN)) && ! command -v gcloud >/dev/null; then
    die "gcloud is not installed (https://cloud.google.com/sdk/docs/install); --dry_run prints the commands"
fi

COMMON=("--zone=$ZONE")
if [[ -n $PROJECT ]]; then COMMON+=("--project=$PROJECT"); fi
TPU=(gcloud compute tpus tpu-vm)

run() {  # run a command, or print it under --dry_run
    if ((DRY_RUN)); then
        quote "$@"
    else
        echo "+ $(quote "$@")" >&2
        "$@"
    fi
}

remote() {  # run a shell command on every worker
    run "${TPU[@]}" ssh "$TPU_NAME" "${COMMON[@]}" --worker=all "--command=$1"
}

create_vm() {
    local create=("${TPU[@]}" create "$TPU_NAME" "${COMMON[@]}" "--accelerator-type=$ACCELERATOR"
        "--version=$TPU_VERSION")
    if ((SPOT)); then create+=(--spot); fi
    run "${create[@]}" || die "creating TPU VM $TPU_NAME failed (output above)"
}

ensure_vm() {
    local describe=("${TPU[@]}" describe "$TPU_NAME" "${COMMON[@]}" "--format=value(state)") state
    if ((DRY_RUN)); then
        echo "# dry run: the VM is assumed not to exist yet (an existing READY one is reused, a STOPPED one started)"
        quote "${describe[@]}"
        create_vm
        return
    fi
    state=$("${describe[@]}" 2>/dev/null || true)
    case $state in
        "") create_vm ;;
        READY) echo "$PROG: reusing the READY TPU VM $TPU_NAME" >&2 ;;
        STOPPED) run "${TPU[@]}" start "$TPU_NAME" "${COMMON[@]}" ;;
        PREEMPTED | TERMINATED)
            echo "$PROG: the TPU VM $TPU_NAME is $state; recreating it (the runs resume from their workdirs)" >&2
            run "${TPU[@]}" delete "$TPU_NAME" "${COMMON[@]}" --quiet
            create_vm
            ;;
        *) die "the TPU VM $TPU_NAME is $state; wait until it is READY (gcloud compute tpus tpu-vm describe $TPU_NAME --zone=$ZONE)" ;;
    esac
}

PY="\"\$HOME/$REMOTE_VENV/bin/python\""
UV="\"\$HOME/.local/bin/uv\""

install_cmd() {
    if [[ -n $SETUP_CMD ]]; then
        printf '%s' "$SETUP_CMD"
        return
    fi
    printf '%s' "cd $REMOTE_DIR && { test -x $PY || { { python3 -m pip install --user --quiet uv ||"
    printf '%s' " python3 -m pip install --user --quiet --break-system-packages uv; } &&"
    printf '%s' " $UV venv --python $REMOTE_PYTHON_VERSION \"\$HOME/$REMOTE_VENV\"; }; } &&"
    printf '%s' " $UV pip install --python $PY --quiet -c constraints.txt 'jax[tpu]' -e . &&"
    printf '%s' " $PY -c 'import ltkd_jax, jax; print(\"ltkd_jax with jax\", jax.__version__)'"
}

pack_checkout() {  # tracked and untracked-but-not-ignored files of $1 into $2 (the whole tree without git)
    local src=$1 archive=$2
    if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$src" && git ls-files -z -co --exclude-standard |
            while IFS= read -r -d '' f; do if [[ -e $f ]]; then printf '%s\0' "$f"; fi; done |
            tar -czf "$archive" --null -T -)
    else
        tar -czf "$archive" -C "$src" --exclude=./.venv --exclude=./.git --exclude=./workdirs --exclude=./data .
    fi
}

setup() {
    if [[ -n $GIT_URL ]]; then
        local q_url q_ref
        q_url=$(quote "$GIT_URL")
        q_ref=$(quote "$GIT_REF")
        remote "set -eu; if [ -d $REMOTE_DIR/.git ]; then git -C $REMOTE_DIR fetch --quiet origin; else git clone --quiet $q_url $REMOTE_DIR; fi && git -C $REMOTE_DIR checkout --quiet --detach $q_ref && $(install_cmd)" \
            || die "setup on the workers failed (output above); fix it, or rerun with --skip_setup"
        return
    fi
    local src=$CHECKOUT  # checked at the start
    if ((DRY_RUN)); then
        ARCHIVE=/tmp/ltkd_jax_src.tar.gz
        echo "# pack the checkout (git ls-files -co --exclude-standard, or the tree without .venv/.git/workdirs/data)"
        quote tar -czf "$ARCHIVE" -C "$src" .
    else
        ARCHIVE=$(mktemp "${TMPDIR:-/tmp}/ltkd_jax_src.XXXXXX")
        trap 'rm -f "$ARCHIVE"' EXIT
        pack_checkout "$src" "$ARCHIVE"
    fi
    run "${TPU[@]}" scp "$ARCHIVE" "$TPU_NAME:ltkd_jax_src.tar.gz" "${COMMON[@]}" --worker=all \
        || die "copying the checkout to the workers failed (output above)"
    remote "set -eu; mkdir -p $REMOTE_DIR && tar -xzf ltkd_jax_src.tar.gz -C $REMOTE_DIR && rm -f ltkd_jax_src.tar.gz && $(install_cmd)" \
        || die "setup on the workers failed (output above); fix it, or rerun with --skip_setup"
}

run_command() {  # the remote command of one run (ARGS text)
    local args=$1 distributed=" --distributed"
    if [[ $args =~ (^|[[:space:]])--distributed($|[[:space:]]) ]]; then distributed=""; fi
    printf '%s' "TF_CPP_MIN_LOG_LEVEL=3 $PY -m ltkd_jax.main $args$distributed"
}

STATUS=0
if ((DELETE && ${#RUNS[@]} == 0)); then
    run "${TPU[@]}" delete "$TPU_NAME" "${COMMON[@]}" --quiet
    exit 0
fi

ensure_vm
if ((!SKIP_SETUP)); then setup; fi

if ((${#RUNS[@]})); then
    if ((DETACH)); then
        all=""
        for run_args in "${RUNS[@]}"; do all+="${all:+; }$(run_command "$run_args")"; done
        remote "cd $REMOTE_DIR && nohup bash -c $(quote "$all") >>\"\$HOME/ltkd_run.log\" 2>&1 </dev/null &"
        echo "$PROG: started ${#RUNS[@]} run(s) in the background; follow them with:" >&2
        quote "${TPU[@]}" ssh "$TPU_NAME" "${COMMON[@]}" --worker=0 "--command=tail -f ltkd_run.log" >&2
    else
        failed=0
        for run_args in "${RUNS[@]}"; do
            rc=0
            remote "cd $REMOTE_DIR && $(run_command "$run_args")" || rc=$?
            if ((rc != 0)); then
                failed=$((failed + 1))
                STATUS=$rc
                echo "$PROG: run failed (exit status $rc): $run_args" >&2
            fi
        done
        if ((failed)); then echo "$PROG: $failed of ${#RUNS[@]} run(s) failed" >&2; fi
    fi
fi

if ((DELETE)); then run "${TPU[@]}" delete "$TPU_NAME" "${COMMON[@]}" --quiet; fi
exit "$STATUS"
