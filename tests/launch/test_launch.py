"""The launchers' dry runs print each host's command. The real 2-process localhost launches
(training, preemption, restart, export) are in `tests/training/test_multiprocess.py`."""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _launch(script: str, args: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", os.path.join(ROOT, "launch", script), *args],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_local_dry_run_prints_one_command_per_process():
    out = _launch(
        "local.sh",
        ["--config=configs/teacher.py:demo", "--workdir=W"],
        DRY_RUN="1",
        NUM_PROCESSES="2",
        DEVICES_PER_PROCESS="2",
        JAX_PLATFORMS="cpu",
    )
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0 and len(lines) == 2
    for rank, line in enumerate(lines):
        assert f"DAJAX_PROCESS_ID={rank}" in line and "DAJAX_NUM_PROCESSES=2" in line
        assert "--xla_force_host_platform_device_count=2" in line
        assert line.split(" > ")[0].endswith(
            "-m dajax.main --config=configs/teacher.py:demo --workdir=W"
        )


def test_slurm_and_tpu_dry_runs():
    slurm = _launch("slurm_gpu.sbatch", ["--config=c.py", "--workdir=W"], DRY_RUN="1")
    assert slurm.returncode == 0
    assert slurm.stdout.startswith("srun --ntasks-per-node=8 --gpus-per-task=1")
    assert "-m dajax.main --config=c.py --workdir=W" in slurm.stdout
    tpu = _launch("tpu_vm.sh", ["--config=c.py"], DRY_RUN="1", TPU_NAME="pod", ZONE="z")
    assert tpu.returncode == 0
    assert "tpu-vm ssh pod --zone=z --worker=all" in tpu.stdout
    assert "cd ~/dajax && " in tpu.stdout and "dajax.main --config=c.py" in tpu.stdout
    missing = _launch("tpu_vm.sh", [], DRY_RUN="1", TPU_NAME="", ZONE="z")
    assert missing.returncode != 0 and "set TPU_NAME" in missing.stderr


def test_tpu_multi_slice_dry_run_reaches_every_slice():
    out = _launch(
        "tpu_vm.sh", ["--config=c.py"], DRY_RUN="1", TPU_NAME="qr", ZONE="z", NUM_SLICES="2"
    )
    assert out.returncode == 0
    assert out.stdout.startswith("gcloud compute tpus queued-resources ssh qr --zone=z")
    assert "--node=all --worker=all" in out.stdout and "dajax.main --config=c.py" in out.stdout
    bad = _launch("tpu_vm.sh", [], DRY_RUN="1", TPU_NAME="qr", ZONE="z", NUM_SLICES="two")
    assert bad.returncode != 0 and "NUM_SLICES must be a positive integer" in bad.stderr
