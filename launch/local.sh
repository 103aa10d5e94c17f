#!/usr/bin/env bash
# One host: every local device, in one process (the usual case), or NUM_PROCESSES processes
# joined through JAX's coordinator on localhost (to rehearse a multi-host run on one machine).
#
#   launch/local.sh --config=configs/student.py:demo --workdir=runs/demo
#   NUM_PROCESSES=2 DEVICES_PER_PROCESS=2 JAX_PLATFORMS=cpu launch/local.sh --config=... --workdir=W
#   DRY_RUN=1 NUM_PROCESSES=2 launch/local.sh --config=... --workdir=W   # print, don't run
#
# Reads: NUM_PROCESSES (1), DEVICES_PER_PROCESS (CPU: fake devices per process; GPU: GPUs per
# process, split with CUDA_VISIBLE_DEVICES), COORDINATOR_PORT (12355), COMPILE_CACHE
# (~/.cache/dajax/jax, persistent compilation cache), LOG_DIR (logs/, one file per process when
# NUM_PROCESSES > 1), PYTHON (python), ENTRY (what python runs: -m dajax.main), DRY_RUN.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/env.sh

NUM_PROCESSES=${NUM_PROCESSES:-1}
DEVICES_PER_PROCESS=${DEVICES_PER_PROCESS:-}
COORDINATOR_PORT=${COORDINATOR_PORT:-12355}
read -r -a entry <<< "${ENTRY:--m dajax.main}"
LOG_DIR=${LOG_DIR:-logs}

if [[ "$NUM_PROCESSES" == 1 ]]; then
  run_or_print "$PYTHON" "${entry[@]}" "$@"
  exit 0
fi

[[ -n "${DRY_RUN:-}" ]] || mkdir -p "$LOG_DIR"
pids=()
for ((rank = 0; rank < NUM_PROCESSES; rank++)); do
  env_vars=(DAJAX_COORDINATOR="localhost:$COORDINATOR_PORT" DAJAX_NUM_PROCESSES="$NUM_PROCESSES"
            DAJAX_PROCESS_ID="$rank")
  if [[ -n "$DEVICES_PER_PROCESS" ]]; then
    if [[ "${JAX_PLATFORMS:-}" == cpu ]]; then
      env_vars+=(XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$DEVICES_PER_PROCESS")
    else
      first=$((rank * DEVICES_PER_PROCESS))
      env_vars+=(CUDA_VISIBLE_DEVICES="$(seq -s, "$first" $((first + DEVICES_PER_PROCESS - 1)))")
    fi
  fi
  if [[ -n "${DRY_RUN:-}" ]]; then
    echo "env ${env_vars[*]} $PYTHON ${entry[*]} $* > $LOG_DIR/process_$rank.log"
    continue
  fi
  env "${env_vars[@]}" "$PYTHON" "${entry[@]}" "$@" > "$LOG_DIR/process_$rank.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
[[ $status == 0 ]] || echo "a process failed (exit $status); see $LOG_DIR/process_*.log" >&2
exit $status
