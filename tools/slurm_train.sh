#!/usr/bin/env bash
# Training under Slurm: tools/slurm_train.sh PARTITION JOB_NAME CONFIG [ARGS...]
# GPUS (total), GPUS_PER_NODE, CPUS_PER_TASK and SRUN_ARGS tune the job.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG [ARGS...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
GPUS=${GPUS:-3}
GPUS_PER_NODE=${GPUS_PER_NODE:-$GPUS}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}

# SRUN_ARGS is unquoted: it may hold several options.
# shellcheck disable=SC2086
PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$(dirname "$0")/train.py" "$CONFIG" --launcher=slurm "${@:4}"
