#!/usr/bin/env bash
# The GPU tables of benchmarks/README.md in one run on one NVIDIA GPU, bf16, 518x518, cuDNN
# attention, most important first: the ViT-L teacher step (with a profile and its summary), ViT-L
# batched inference (batch 32, then 1), the ViT-L student step, ViT-L inference again with the
# served (jax.export) artifact timed and a profile, inference for ViT-S/B, then the ViT-S/B
# teacher and student steps (batch 16 labeled).
#
#     OUT=/tmp/gpu-tables bash benchmarks/gpu_tables.sh
#
# SIZE (default 518) and ATTENTION (default cudnn) override those settings, e.g. for a quick
# check of the script on a CPU: SIZE=28 ATTENTION=xla.
#
# Each part runs in its own process under `timeout` (PART_TIMEOUT seconds, default 300), so one
# that fails or hangs leaves the others' tables. Logs (with the trace summaries), the Perfetto
# trace and the optimised HLO of the teacher step are written to $OUT (default
# /tmp/dajax-gpu-tables), eight files in all.
set -u
out=${OUT:-/tmp/dajax-gpu-tables}
limit=${PART_TIMEOUT:-300}
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=1
PYTHON=${PYTHON:-python3}
profile=$(mktemp -d)

part() {  # part NAME COMMAND...: run COMMAND under the time limit, append to $out/NAME.log
  local name=$1
  shift
  echo "== $name: $*" | tee -a "$out/$name.log"
  timeout "$limit" "$@" 2>&1 | tee -a "$out/$name.log"
  echo "== $name: exit ${PIPESTATUS[0]}"
}

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.used,memory.total \
  --format=csv
common=(--dtype bfloat16 --attention "${ATTENTION:-cudnn}" --size "${SIZE:-518}")
part teacher "$PYTHON" benchmarks/train_step.py --encoder vitl --labeled-batch 16 \
  --stages teacher --iters 10 --profile "$profile" "${common[@]}"
"$PYTHON" benchmarks/trace_summary.py "$profile/teacher" --top 40 2>&1 | tee -a "$out/teacher.log"
trace=$(find "$profile/teacher" -name perfetto_trace.json.gz | head -n 1)
[[ -n "$trace" ]] && cp "$trace" "$out/teacher_perfetto_trace.json.gz"
[[ -f "$profile/teacher/optimized_hlo.txt" ]] &&
  gzip -c "$profile/teacher/optimized_hlo.txt" >"$out/teacher_hlo.txt.gz"
part inference_vitl "$PYTHON" benchmarks/inference.py --encoders vitl --batch-sizes 32 1 \
  --iters 10 "${common[@]}"
part student "$PYTHON" benchmarks/train_step.py --encoder vitl --labeled-batch 4 \
  --stages student --iters 10 "${common[@]}"
part inference_vitl "$PYTHON" benchmarks/inference.py --encoders vitl --batch-sizes 32 \
  --iters 10 --served --profile "$profile/inference" "${common[@]}"
"$PYTHON" benchmarks/trace_summary.py "$profile/inference/vitl_b32" --top 40 2>&1 |
  tee -a "$out/inference_vitl.log"
part inference_vits_vitb "$PYTHON" benchmarks/inference.py --encoders vits vitb --batch-sizes 1 32 \
  --iters 10 "${common[@]}"
for encoder in vits vitb; do
  part "train_$encoder" "$PYTHON" benchmarks/train_step.py --encoder "$encoder" --labeled-batch 16 \
    --stages teacher student --iters 10 "${common[@]}"
done
rm -rf "$profile"
