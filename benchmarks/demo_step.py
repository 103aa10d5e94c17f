"""Train-step speed at the demo's shapes: the real jitted teacher and student steps of
`configs/teacher.py:demo` and `configs/student.py:demo`, per compute dtype, against the same
recipe in PyTorch.

    python benchmarks/demo_step.py                                  # 84-px crops (the demo)
    python benchmarks/demo_step.py --size 168                       # a proof run's crops
    git archive 72e89ac dajax configs | tar -x -C /tmp/base
    python benchmarks/demo_step.py --baseline-tree /tmp/base        # + that code's float32 step
    python benchmarks/demo_step.py --ablations taps autodiff-dot bf16-head
    python benchmarks/demo_step.py --profile /tmp/demo-trace        # + jax.profiler traces

Each dajax row builds its step as the demo does (`dajax.training.setup.model_from_config` on the
config's `model` with `model.dtype` set to the row's dtype, the stage's `make_loss_fn`, the
config's AdamW from `build_optimizer`, `make_train_step`, jitted with the state donated), on a
fixed random batch of the config's batch sizes (teacher 8 labeled images; student 4 labeled +
8 unlabeled, plus the frozen encoder's forward for L_feat) at `--size` pixels. The baseline row
runs the same in a child process on the code under `--baseline-tree` (a copy of `dajax/` and
`configs/`, e.g. of an earlier commit), so the table compares code, not only settings. The
`--ablations` add bf16 rows each with one of the CPU kernels of bf16 training switched off
(`ABLATIONS`), to show what each is worth. The PyTorch row is `benchmarks/train_step.py`'s
reference recipe (transformers' Depth Anything with
the config's architecture, the affine-invariant loss, AdamW, clipping; the student adds the
perturbations, CutMix, a second pass and the frozen encoder) in float32.

Every row runs `--steps` steps per round (dispatched back to back, the loss read after the
last, as in training), once per round, in turn, for `--rounds` rounds, so a load change on a
shared machine reaches all rows alike. The table prints the median and min ms/step, steps/s,
the speed-up over the first row (by the medians), the first step's loss and, for dajax, the
model GFLOP/s (`hardware.model_flops`: the step's matmuls and convolutions). Losses of rows with
the same dtype and code are equal (same weights, same batch); bf16's differ by its rounding.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np

# Appended, not prepended: a child started on `--baseline-tree` finds that tree's `dajax` and
# `configs` first (PYTHONPATH), and this repository's `benchmarks` after them.
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

STAGES = ("teacher", "student")


def _float32_result_dot(x, w, precision):
    """`precision.dot`'s forward, differentiated by autodiff (the "autodiff-dot" ablation)."""
    return jnp.dot(x, w, precision=precision, preferred_element_type=jnp.float32)


# bf16 rows with one CPU kernel of bf16 training switched off while the step is traced:
# (module, attribute, replacement) each.
ABLATIONS = {
    # the kernel gradient of every 3x3 convolution by taps (`conv.kernel_grad_by_conv` off)
    "taps": ("dajax.models.kernels.conv", "CONV_FORM_PIXELS", 0),
    # autodiff's backward of the bf16 x bf16 -> float32 matmuls (`precision.dot` off)
    "autodiff-dot": ("dajax.models.kernels.precision", "_half_dot", _float32_result_dot),
    # the DPT head in bf16 too (`precision.convolution_dtype` off)
    "bf16-head": ("dajax.models.kernels", "convolution_dtype", lambda dtype: dtype),
}


@contextlib.contextmanager
def ablated(name: str | None):
    """Switches `ABLATIONS[name]` on for the duration (nothing for None)."""
    if name is None:
        yield
        return
    module_name, attribute, replacement = ABLATIONS[name]
    module = importlib.import_module(module_name)
    saved = getattr(module, attribute)
    setattr(module, attribute, replacement)
    try:
        yield
    finally:
        setattr(module, attribute, saved)


def demo_config(stage: str, dtype: str):
    """The demo config of `stage` with the model computing in `dtype`."""
    from configs import student as student_cfg
    from configs import teacher as teacher_cfg

    config = (teacher_cfg if stage == "teacher" else student_cfg).get_config("demo")
    config.model.dtype = dtype
    return config


def make_batch(config, stage: str, size: int) -> dict[str, np.ndarray]:
    """A fixed random batch of the config's batch sizes at `size` x `size` pixels."""
    rng = np.random.default_rng(0)

    def labeled(n, prefix=""):
        return {
            f"{prefix}image": rng.integers(0, 256, (n, size, size, 3), np.uint8),
            f"{prefix}target": rng.uniform(0.05, 1.0, (n, size, size)).astype(np.float32),
            f"{prefix}mask": rng.uniform(size=(n, size, size)) > 0.1,
        }

    if stage == "teacher":
        return labeled(config.data.labeled_batch)
    n = config.data.unlabeled_batch
    return {
        **labeled(config.data.labeled_batch, "l_"),
        "u_image": rng.integers(0, 256, (n, size, size, 3), np.uint8),
        "u_pseudo": rng.uniform(0.0, 1.0, (n, size, size)).astype(np.float32),
    }


def dajax_step(stage: str, dtype: str, size: int, attention: str | None = None):
    """The demo's jitted `stage` step: (step function, initial state, batch, frozen)."""
    import jax

    from dajax.models import param_shapes
    from dajax.training import setup, student, teacher
    from dajax.training.optimizer import build_optimizer
    from dajax.training.state import create_state, make_train_step

    config = demo_config(stage, dtype)
    if attention:
        config.model.attention = attention
    model, model_config = setup.model_from_config(config.model)
    params = setup.initial_params(model_config, "", config.seed)
    tx, _ = build_optimizer(config.optim, param_shapes(model), config.total_steps)
    if stage == "teacher":
        loss_fn, frozen = teacher.make_loss_fn(model, config.loss), None
    else:
        loss_fn = student.make_loss_fn(model, config)
        frozen = {"dinov2": jax.device_put(params["pretrained"])}
    step = jax.jit(make_train_step(loss_fn, tx, config.seed), donate_argnums=0)
    state = jax.jit(lambda p: create_state(p, tx))(params)
    return step, state, jax.device_put(make_batch(config, stage, size)), frozen


class _InProcessRow:
    """A row timed in this process: subclasses set `run() -> loss` (one step, not waited for)."""

    def seconds(self, n: int) -> float:
        """Wall seconds of n steps dispatched back to back, the last loss read."""
        start = time.perf_counter()
        for _ in range(n):
            loss = self.run()
        float(loss)
        return time.perf_counter() - start


class DajaxRow(_InProcessRow):
    """A dajax step in this process: `first_loss`, `seconds(n)`, `flops` (None unless
    `count_flops`); `compiled` for profiles."""

    def __init__(self, stage: str, dtype: str, size: int, count_flops: bool = True, ablation=None):
        step, self.state, self.batch, self.frozen = dajax_step(stage, dtype, size)
        with ablated(ablation):  # the program is traced here
            self.compiled = step.lower(self.state, self.batch, self.frozen).compile()
        self.first_loss = float(self.run())
        self.flops = self._model_flops(stage, dtype, size) if count_flops else None

    def run(self):
        """One step; returns its loss without waiting for it."""
        self.state, metrics = self.compiled(self.state, self.batch, self.frozen)
        return metrics["loss"]

    @staticmethod
    def _model_flops(stage: str, dtype: str, size: int) -> int:
        """Matmul and convolution FLOPs of one step, counted with XLA's plain attention (the
        CPU kernel's matmuls are inside a custom gradient the count cannot see through)."""
        from benchmarks import hardware

        step, state, batch, frozen = dajax_step(stage, dtype, size, attention="xla")
        return hardware.model_flops(step, state, batch, frozen)


class ChildRow:
    """A dajax step in a child process running `--serve` on the code under `tree`."""

    def __init__(self, tree: str, stage: str, dtype: str, size: int):
        env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
        command = [sys.executable, os.path.abspath(__file__), "--serve", stage, dtype]
        self.child = subprocess.Popen(
            [*command, "--size", str(size)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.first_loss = float(self._reply("ready"))
        self.flops = None

    def _reply(self, tag: str) -> str:
        for line in self.child.stdout:
            if line.startswith(tag + " "):
                return line.split()[1]
        raise RuntimeError(f"the baseline child exited before answering {tag!r}")

    def seconds(self, n: int) -> float:
        self.child.stdin.write(f"{n}\n")
        self.child.stdin.flush()
        return float(self._reply("seconds"))

    def close(self) -> None:
        self.child.stdin.close()
        self.child.wait()


def serve(stage: str, dtype: str, size: int) -> None:
    """Child mode: builds the step, prints 'ready <first loss>', then answers each line n on
    stdin with 'seconds <wall seconds of n steps>'."""
    row = DajaxRow(stage, dtype, size, count_flops=False)
    print(f"ready {row.first_loss}", flush=True)
    for line in sys.stdin:
        print(f"seconds {row.seconds(int(line))}", flush=True)


class TorchRow(_InProcessRow):
    """`benchmarks/train_step.py`'s PyTorch recipe for `stage` on the demo's architecture and
    batch, float32 (the parent process only: it imports torch and transformers)."""

    def __init__(self, stage: str, size: int):
        import torch
        from transformers import Dinov2Model

        from benchmarks import train_step as ts
        from benchmarks.inference import hf_model
        from dajax.training.setup import model_config

        config = demo_config(stage, "float32")
        torch.manual_seed(0)
        ref = hf_model(model_config(config.model)).train()
        batch = {k: torch.from_numpy(v) for k, v in make_batch(config, stage, size).items()}
        opt = ts.torch_setup(ref, config.optim.base_lr)
        if stage == "student":
            frozen = Dinov2Model(ref.backbone.config).eval()
            backbone = {k.removeprefix("backbone."): v for k, v in ref.state_dict().items()}
            frozen.load_state_dict(backbone, strict=False)
            loss_fn = lambda: ts.torch_student_loss(ref, frozen, batch)  # noqa: E731
        else:
            x = ts.torch_normalize(batch["image"].permute(0, 3, 1, 2).float() / 255)
            loss_fn = lambda: ts.torch_affine_invariant(  # noqa: E731
                ref(pixel_values=x).predicted_depth, batch["target"], batch["mask"]
            )
        self.run = lambda: ts.torch_step(ref, opt, loss_fn, torch.autocast("cpu", enabled=False))
        self.first_loss = float(self.run())
        self.flops = None


def build_rows(stage: str, args) -> dict[str, object]:
    """The rows of `stage`'s table, baseline first."""
    rows = {}
    if args.baseline_tree:
        label = args.baseline_label or os.path.basename(os.path.normpath(args.baseline_tree))
        rows[f"dajax float32, {label} (baseline)"] = ChildRow(
            args.baseline_tree, stage, "float32", args.size
        )
    for dtype in args.dtypes:
        rows[f"dajax {dtype}"] = DajaxRow(stage, dtype, args.size)
    for name in args.ablations:
        rows[f"dajax bfloat16, {name}"] = DajaxRow(stage, "bfloat16", args.size, ablation=name)
    if not args.no_torch:
        rows["PyTorch float32"] = TorchRow(stage, args.size)
    return rows


def time_rows(rows: dict, rounds: int, steps: int) -> dict[str, list[float]]:
    """Seconds per step of each row: `rounds` rounds, each row `steps` steps per round, in
    turn."""
    times = {name: [] for name in rows}
    for _ in range(rounds):
        for name, row in rows.items():
            times[name].append(row.seconds(steps) / steps)
    return times


def print_table(stage: str, rows: dict, times: dict) -> None:
    """The markdown table of one stage."""
    base = float(np.median(next(iter(times.values()))))
    print(f"\n{stage} step\n")
    print("| row | ms/step median | min | steps/s | vs first row | loss, first step | GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        median, low = float(np.median(times[name])), float(np.min(times[name]))
        rate = f"{row.flops / median / 1e9:.0f}" if row.flops else "-"
        print(
            f"| {name} | {1e3 * median:.1f} | {1e3 * low:.1f} | {1 / median:.2f} | "
            f"{base / median:.2f}x | {row.first_loss:.4f} | {rate} |",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--size", type=int, default=84, help="crop size in pixels (a multiple of 14)")
    p.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"])
    p.add_argument("--baseline-tree", default="", help="a copy of dajax/ and configs/ to time")
    p.add_argument("--baseline-label", default="", help="its name in the table")
    p.add_argument("--ablations", nargs="*", default=[], choices=sorted(ABLATIONS))
    p.add_argument("--no-torch", action="store_true", help="leave out the PyTorch row")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=10, help="steps per row and round")
    p.add_argument("--profile", default="", help="write jax.profiler traces of the dajax rows")
    p.add_argument("--serve", nargs=2, metavar=("STAGE", "DTYPE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(*args.serve, args.size)
        return

    from benchmarks import hardware
    from benchmarks.inference import profile_runs

    print(hardware.describe())
    print(f"demo configs, {args.size}x{args.size} crops, {args.rounds} rounds x {args.steps} steps")
    for stage in args.stages:
        rows = build_rows(stage, args)
        times = time_rows(rows, args.rounds, args.steps)
        print_table(stage, rows, times)
        for name, row in rows.items():
            if args.profile and isinstance(row, DajaxRow):
                folder = os.path.join(args.profile, f"{stage}-{name.split()[-1]}")
                profile_runs(row.run, row.compiled, folder, runs=5)
            if isinstance(row, ChildRow):
                row.close()


if __name__ == "__main__":
    main()
