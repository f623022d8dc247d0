#!/usr/bin/env bash
# One Prefect process worker per local GPU, each with --limit 1 (one flow run per GPU at a time) and
# CUDA_VISIBLE_DEVICES set to its GPU, in the background. See infra/README.md.
#
#   PREFECT_API_URL=http://<server>:4200/api infra/start-gpu-workers.sh [--dry-run]
#   infra/start-gpu-workers.sh stop [--dry-run]
#
# Environment:
#   PREFECT_API_URL  the Prefect server's API (required to start)
#   GPUS             comma-separated GPU indices, e.g. 0,1 (default: every GPU nvidia-smi lists)
#   POOL             the process work pool (default gpu; created if missing)
#   LOG_DIR          logs gpu<i>.log and pid files gpu<i>.pid (default .livo/workers; relative to the repository root)
#   LIVO_ROOT        the livo checkout the flow runs run in (default: this repository)
set -euo pipefail

die() {
    echo "start-gpu-workers.sh: $*" >&2
    exit 1
}

usage() { # the comment block at the top of this file
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

action=start
dry_run=false
for arg in "$@"; do
    case "$arg" in
        start | stop) action=$arg ;;
        --dry-run) dry_run=true ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown argument: $arg"
            ;;
    esac
done

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
log_dir=${LOG_DIR:-.livo/workers}

is_our_worker() { # pid: alive and still a prefect worker (not a reused pid)
    local args
    args=$(ps -o args= -p "$1" 2>/dev/null) || return 1
    [[ $args == *prefect*"worker start"* ]]
}

stop_group() { # pid: SIGTERM its process group (the worker and its flow run), again after 10 s, then SIGKILL
    local pid=$1 signal
    # A backgrounded worker may ignore the first SIGTERM, as `livo worker stop` knows: hence two.
    for signal in TERM TERM KILL; do
        kill -s "$signal" -- "-$pid" 2>/dev/null || return 0
        for _ in $(seq 20); do
            kill -0 "$pid" 2>/dev/null || return 0
            sleep 0.5
        done
    done
}

stop_workers() {
    local pid_file name pid found=false
    for pid_file in "$log_dir"/gpu*.pid; do
        [[ -e $pid_file ]] || continue
        found=true
        name=$(basename "$pid_file" .pid)
        pid=$(<"$pid_file")
        if ! is_our_worker "$pid"; then
            echo "$name: no worker running (stale pid file $pid_file)"
        elif $dry_run; then
            echo "kill -s TERM -- -$pid  # $name; again after 10 s, then KILL"
            continue
        else
            echo "$name: stopping the worker (pid $pid)"
            stop_group "$pid"
        fi
        rm -f "$pid_file"
    done
    $found || echo "no pid files in $log_dir: no worker to stop"
}

gpu_indices() {
    local list
    if [[ -n ${GPUS:-} ]]; then
        list=${GPUS//,/ }
    elif command -v nvidia-smi >/dev/null 2>&1; then
        list=$(nvidia-smi --query-gpu=index --format=csv,noheader) || die "nvidia-smi failed: is the NVIDIA driver loaded? Or set GPUS=0,1"
    else
        die "no nvidia-smi on PATH to list the GPUs: install the NVIDIA driver, or set GPUS to the GPU indices (GPUS=0,1)"
    fi
    local index
    for index in $list; do
        [[ $index =~ ^[0-9]+$ ]] || die "not a GPU index: '$index' (GPUS takes indices, e.g. GPUS=0,1)"
        echo "$index"
    done
}

start_workers() {
    [[ -n ${PREFECT_API_URL:-} ]] || die "PREFECT_API_URL is not set: export PREFECT_API_URL=http://<server>:4200/api"
    if ! $dry_run; then
        command -v prefect >/dev/null 2>&1 || die "no prefect on PATH: activate livo's environment"
        command -v setsid >/dev/null 2>&1 || die "no setsid on PATH (util-linux)"
    fi
    local gpus
    gpus=$(gpu_indices)
    [[ -n $gpus ]] || die "no GPU found (nvidia-smi listed none)"

    export LIVO_ROOT=${LIVO_ROOT:-$repo_root}
    # nvidia-smi numbers GPUs in PCI bus order, CUDA by default fastest first: make CUDA_VISIBLE_DEVICES use the
    # numbering of nvidia-smi (and of GPUS).
    export CUDA_DEVICE_ORDER=PCI_BUS_ID
    local pool=${POOL:-gpu} host
    host=$(uname -n)
    host=${host%%.*}
    $dry_run || mkdir -p "$log_dir"

    local i pid_file log worker
    for i in $gpus; do
        pid_file=$log_dir/gpu$i.pid
        log=$log_dir/gpu$i.log
        worker=livo-gpu$i-$host
        if [[ -e $pid_file ]] && is_our_worker "$(<"$pid_file")"; then
            echo "gpu$i: worker already running (pid $(<"$pid_file"))"
            continue
        fi
        local command=(prefect worker start --pool "$pool" --type process --limit 1 --name "$worker")
        if $dry_run; then
            printf 'LIVO_ROOT=%q CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=%s setsid ' "$LIVO_ROOT" "$i"
            printf '%q ' "${command[@]}"
            printf '> %q 2>&1 &\n' "$log"
        else
            # setsid: its own session, so that the worker outlives this shell and its terminal, and `stop` can
            # signal its process group, flow run included (setsid execs: $! is the worker's pid).
            CUDA_VISIBLE_DEVICES=$i setsid "${command[@]}" >"$log" 2>&1 &
            echo $! >"$pid_file"
            echo "gpu$i: worker $worker started (pid $!, log $log)"
        fi
    done
}

if [[ $action == stop ]]; then
    stop_workers
else
    start_workers
fi
