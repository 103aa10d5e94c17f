"""Runs 3 teacher steps on the tiny config's procedural scenes, in one launched JAX process.

    NUM_PROCESSES=2 ENTRY=tests/training/multiprocess_teacher.py launch/local.sh WORKDIR [KILL]

The process learns its rank and the process count from `DAJAX_PROCESS_ID` /
`DAJAX_NUM_PROCESSES` (set by `launch/local.sh`; absent = one process). Every process holds
4 / NUM_PROCESSES CPU devices and its data pipeline feeds it its contiguous share of each
global batch of `config.data.labeled_batch` (8), so any process count must see the same images
and give the same losses and params. The run ends with the stages' own export
(`WORKDIR/export`, gathered over processes and written by process 0). With KILL = `sigterm`,
the last process sends itself SIGTERM after step 1 (a preempted host), then pauses while JAX's
preemption service agrees on the step every process saves: the first one that all of them
can still reach (1 or 2; 3, the last, on a slow machine; `dajax.training.preemption`).
"""

import json
import os
import signal
import sys
import time

process_id = int(os.environ.get("DAJAX_PROCESS_ID", "0"))
num_processes = int(os.environ.get("DAJAX_NUM_PROCESSES", "1"))
workdir = sys.argv[1]
preempt_last_process = sys.argv[2:] == ["sigterm"] and process_id == num_processes - 1
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={4 // num_processes}"
sys.path[:0] = [os.path.dirname(__file__), os.path.join(os.path.dirname(__file__), "../..")]

from tiny_configs import tiny_student  # noqa: E402

from dajax import runtime  # noqa: E402
from dajax.models import param_shapes  # noqa: E402
from dajax.training import loop, setup, supervised, teacher  # noqa: E402
from dajax.training.optimizer import build_optimizer  # noqa: E402


class RecordedBatches:
    """The stage's own labeled pipeline (this process's share of each global batch of
    `config.data.labeled_batch`), writing each batch's per-image pixel sums to
    `WORKDIR/batches_<process>.jsonl`, so the test can join the shares and compare them with a
    one-process run's batches."""

    def __init__(self, batches, path):
        self.batches, self.path = batches, path

    def __next__(self):
        batch = next(self.batches)
        with open(self.path, "a") as f:
            f.write(json.dumps(batch["image"].sum(axis=(1, 2, 3)).tolist()) + "\n")
        return batch

    def get_state(self) -> bytes:
        """The grain iterator's position, as the JSON bytes grain's handler saves."""
        return json.dumps(self.batches.get_state()).encode()

    def set_state(self, state: bytes):
        self.batches.set_state(json.loads(state))

    def start_prefetch(self):
        """grain's checkpoint handler calls this after a restore."""
        if hasattr(self.batches, "start_prefetch"):
            self.batches.start_prefetch()


def preempt_after_step_1(step, state, metrics_log):
    if preempt_last_process and step == 1:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(3)  # JAX notices SIGTERM within a second; the agreement follows


runtime.initialize()
config = tiny_student().teacher_stage
config.total_steps = 3
# One process runs data parallel (1 x 4), several run FSDP (data 2 x fsdp 2 over processes):
# equal numbers show that FSDP and the process split only change where arrays live.
config.mesh.fsdp = 1 if num_processes == 1 else 2
config.optim.warmup_steps = 0
# float32 compute: the comparison is of data and sharding, and bf16 would round differently
# reduced partial sums of the two layouts.
config.model.dtype = "float32"
# Parameters the affine-invariant loss cannot see (the output bias) get gradients that are
# reduction-order noise; a larger Adam eps keeps that noise from becoming full-size updates.
config.optim.eps = 1e-3
model, model_config = setup.model_from_config(config.model)
tx, _ = build_optimizer(config.optim, param_shapes(model), config.total_steps)
recipe = loop.Recipe(
    init_params=lambda: setup.initial_params(model_config, "", config.seed),
    tx=tx,
    loss_fn=teacher.make_loss_fn(model),
    batches=RecordedBatches(
        supervised.labeled_batches(config)[0],
        os.path.join(workdir, f"batches_{process_id}.jsonl"),
    ),
    model_config=model_config,
    on_log=preempt_after_step_1,
)
state = loop.train(recipe, config, workdir)
setup.write_inference_checkpoint(workdir, state.params, model_config)
