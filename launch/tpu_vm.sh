#!/usr/bin/env bash
# TPU VM pods: the same command on every worker over gcloud ssh; JAX finds the other workers
# itself (TPU metadata), one process per host driving its local chips.
#
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a launch/tpu_vm.sh --config=configs/student.py:variant=vitl \
#       --workdir=gs://bucket/runs/student --config.mesh.fsdp=8
#   NUM_SLICES=2 TPU_NAME=my-queued-resource ZONE=z launch/tpu_vm.sh --config=... --workdir=W
#   DRY_RUN=1 TPU_NAME=t ZONE=z launch/tpu_vm.sh --config=... --workdir=W   # print the command
#
# Multi-slice (NUM_SLICES > 1): TPU_NAME names the queued resource that holds the slices
# (`gcloud compute tpus queued-resources create ... --node-count=N`); the command runs on every
# worker of every slice, JAX joins the slices over the data-centre network (the MEGASCALE_*
# settings the queued resource provides) and `dajax.sharding.make_mesh` puts the slices on the
# mesh's 'slice' axis: data parallel across slices, 'data' x 'fsdp' inside each.
#
# Reads: TPU_NAME and ZONE (required), NUM_SLICES (1), PROJECT (gcloud's default), REPO_DIR
# (the checkout on each worker, ~/dajax), LOG_DIR (logs/ on each worker: host-<name>.log),
# PYTHON, DRY_RUN.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME to the TPU VM name (the queued resource with NUM_SLICES > 1)}"
: "${ZONE:?set ZONE to the TPU zone}"
NUM_SLICES=${NUM_SLICES:-1}
[[ "$NUM_SLICES" =~ ^[1-9][0-9]*$ ]] || { echo "NUM_SLICES must be a positive integer, got '$NUM_SLICES'" >&2; exit 2; }
REPO_DIR=${REPO_DIR:-'~/dajax'}
LOG_DIR=${LOG_DIR:-logs}
PYTHON=${PYTHON:-python}
args=$(printf '%q ' "$@")
remote="cd $REPO_DIR && mkdir -p $LOG_DIR && \
JAX_COMPILATION_CACHE_DIR=\${COMPILE_CACHE:-\$HOME/.cache/dajax/jax} \
$PYTHON -m dajax.main $args 2>&1 | tee $LOG_DIR/host-\$(hostname).log"
if [[ "$NUM_SLICES" == 1 ]]; then
  cmd=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all)
else
  cmd=(gcloud compute tpus queued-resources ssh "$TPU_NAME" --zone="$ZONE" --node=all --worker=all)
fi
cmd+=(--command="$remote")
[[ -z "${PROJECT:-}" ]] || cmd+=(--project="$PROJECT")
if [[ -n "${DRY_RUN:-}" ]]; then
  echo "${cmd[*]}"
else
  "${cmd[@]}"
fi
