#!/usr/bin/env bash
# TPU VM pods: the same command on every worker over gcloud ssh; JAX finds the other workers
# itself (TPU metadata), one process per host driving its local chips.
#
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a launch/tpu_vm.sh --config=configs/student.py:variant=vitl \
#       --workdir=gs://bucket/runs/student --config.mesh.fsdp=8
#   DRY_RUN=1 TPU_NAME=t ZONE=z launch/tpu_vm.sh --config=... --workdir=W   # print the command
#
# Reads: TPU_NAME and ZONE (required), PROJECT (gcloud's default), REPO_DIR (the checkout on
# each worker, ~/dajax), LOG_DIR (logs/ on each worker: host-<worker>.log), PYTHON, DRY_RUN.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU zone}"
REPO_DIR=${REPO_DIR:-'~/dajax'}
LOG_DIR=${LOG_DIR:-logs}
PYTHON=${PYTHON:-python}
args=$(printf '%q ' "$@")
remote="cd $REPO_DIR && mkdir -p $LOG_DIR && \
JAX_COMPILATION_CACHE_DIR=\${COMPILE_CACHE:-\$HOME/.cache/dajax/jax} \
$PYTHON -m dajax.main $args 2>&1 | tee $LOG_DIR/host-\$(hostname).log"
cmd=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$remote")
[[ -z "${PROJECT:-}" ]] || cmd+=(--project="$PROJECT")
if [[ -n "${DRY_RUN:-}" ]]; then
  echo "${cmd[*]}"
else
  "${cmd[@]}"
fi
