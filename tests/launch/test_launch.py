"""The launchers: dry runs print each host's command; a real 2-process localhost run."""

import os
import subprocess

from dajax import checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = [
    "--config.model.custom.dim=64",
    "--config.model.custom.depth=4",
    "--config.model.custom.heads=1",
    "--config.model.custom.layers=(0,1,2,3)",
    "--config.model.custom.features=16",
    "--config.model.custom.out_channels=(8,16,32,64)",
    "--config.data.crop=28",
    "--config.log_every=1",
    "--config.image_every=0",
]


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


def test_two_process_local_launch_trains_and_exports(tmp_path):
    workdir = tmp_path / "run"
    out = _launch(
        "local.sh",
        ["--config=configs/teacher.py:demo,steps=1", f"--workdir={workdir}", *TINY],
        NUM_PROCESSES="2",
        DEVICES_PER_PROCESS="2",
        JAX_PLATFORMS="cpu",
        LOG_DIR=str(tmp_path / "logs"),
        COMPILE_CACHE=str(tmp_path / "cache"),
        COORDINATOR_PORT="12417",
    )
    logs = {r: (tmp_path / "logs" / f"process_{r}.log").read_text() for r in (0, 1)}
    assert out.returncode == 0, logs[0][-3000:] + logs[1][-3000:]
    assert "[p0] INFO step 1:" in logs[0] and "exported inference params" in logs[0]
    config, params = checkpoints.load_inference_params(workdir / "export")
    assert config.dim == 64 and params["depth_head"]["layer1_rn"]["kernel"].shape[-1] == 16
