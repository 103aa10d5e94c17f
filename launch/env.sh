# Shared by the launchers: XLA/NCCL settings for GPUs, the persistent compilation cache, and
# DRY_RUN (print the command instead of running it). Sourced, not run.
PYTHON=${PYTHON:-python}
# The folder dajax.runtime picks anyway, unless COMPILE_CACHE names another. dajax.runtime
# caches programs of every compile time unless JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS is set.
export JAX_COMPILATION_CACHE_DIR=${COMPILE_CACHE:-${JAX_COMPILATION_CACHE_DIR:-$HOME/.cache/dajax/jax}}
# GPU: overlap collectives with compute, and let XLA use all but a margin of device memory.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-1}

run_or_print() {
  if [[ -n "${DRY_RUN:-}" ]]; then
    echo "$*"
  else
    "$@"
  fi
}
