# shellcheck shell=bash
# Helpers shared by launch/local.sh, launch/tpu_vm.sh and launch/gpu_bench.sh (sourced; the caller sets PROG and
# SCRIPT).
# launch/slurm.sbatch keeps its own copy: sbatch runs a spooled copy of the script, away from this file.

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 2
}

# The caller's header comment, without the shebang and the leading '# '.
usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SCRIPT"
}

# Shell-quote every argument (bare when safe), space-separated: the output can be pasted into a shell.
quote() {
    local out="" arg
    for arg in "$@"; do
        if [[ -n $arg && $arg != *[!A-Za-z0-9_@%+=:,./-]* ]]; then
            out+="${out:+ }$arg"
        else
            out+="${out:+ }'${arg//\'/\'\\\'\'}'"
        fi
    done
    printf '%s\n' "$out"
}

# The interpreter to run: $PYTHON if set, else ROOT/.venv/bin/python if executable, else python3 (printed).
# Without ROOT, the current directory's .venv, named relative to it.
pick_python() {
    local venv=${1:+$1/}.venv/bin/python
    if [[ -n ${PYTHON:-} ]]; then
        printf '%s\n' "$PYTHON"
    elif [[ -x $venv ]]; then
        printf '%s\n' "$venv"
    else
        printf '%s\n' python3
    fi
}
