"""The launchers: the local dry run prints each process's command; Slurm's and the TPU VMs'
launchers run dajax through stand-ins for `srun` and `gcloud` that run the command here (once
per task, or on "every worker"). The real 2-process localhost launches (training, preemption,
restart, export) are in `tests/training/test_multiprocess.py`."""

import os
import subprocess
import sys

import pytest

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


FAKE_SRUN = """#!/usr/bin/env bash
# Stands in for Slurm's srun: records its options, then runs the command once per task.
echo "$@" > "$FAKE_LOG/srun_args"
tasks=1
while [[ "$1" == --* ]]; do
  case "$1" in --ntasks-per-node=*) tasks="${1#*=}" ;; esac
  shift
done
for ((rank = 0; rank < tasks; rank++)); do SLURM_PROCID=$rank "$@" || exit $?; done
"""

FAKE_GCLOUD = """#!/usr/bin/env bash
# Stands in for gcloud's ssh to every worker: records its arguments, runs --command here.
echo "$@" > "$FAKE_LOG/gcloud_args"
for arg in "$@"; do
  case "$arg" in --command=*) exec bash -c "${arg#--command=}" ;; esac
done
exit 3
"""


def _fake_tools(tmp_path) -> dict:
    """PATH with fake `srun` and `gcloud` first, HOME holding `~/dajax` (this checkout)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("gcloud", FAKE_GCLOUD)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(ROOT, home / "dajax")
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "FAKE_LOG": str(tmp_path),
        "PYTHON": sys.executable,
        "JAX_PLATFORMS": "cpu",
        "COMPILE_CACHE": str(tmp_path / "cache"),
    }


HELP = "Labeled data: `config.data.labeled`"  # configs/teacher.py's docstring, in --help


@pytest.mark.slow
def test_slurm_runs_dajax_once_per_task(tmp_path):
    env = _fake_tools(tmp_path)
    out = _launch(
        "slurm_gpu.sbatch",
        ["--config=configs/teacher.py:demo", "--help"],
        GPUS_PER_NODE="2",
        LOG_DIR=str(tmp_path / "logs"),
        **env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count(HELP) == 2  # one dajax process per GPU of the node
    assert "--gpus-per-task=1" in (tmp_path / "srun_args").read_text().split()


@pytest.mark.slow
@pytest.mark.parametrize("slices, ssh", [("1", "tpu-vm ssh"), ("2", "queued-resources ssh")])
def test_tpu_vm_runs_dajax_on_every_worker_of_every_slice(tmp_path, slices, ssh):
    env = _fake_tools(tmp_path)
    logs = tmp_path / "logs"
    out = _launch(
        "tpu_vm.sh",
        ["--config=configs/teacher.py:demo", "--help"],
        TPU_NAME="pod",
        ZONE="z",
        NUM_SLICES=slices,
        LOG_DIR=str(logs),
        **env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert HELP in out.stdout
    (log,) = logs.glob("host-*.log")  # each worker keeps its own log
    assert HELP in log.read_text()
    called = (tmp_path / "gcloud_args").read_text()
    assert f"compute tpus {ssh} pod --zone=z" in called and "--worker=all" in called
    if slices != "1":
        assert "--node=all" in called  # every slice of the queued resource


def test_tpu_vm_refuses_a_missing_name_and_a_bad_slice_count():
    missing = _launch("tpu_vm.sh", [], DRY_RUN="1", TPU_NAME="", ZONE="z")
    assert missing.returncode != 0 and "set TPU_NAME" in missing.stderr
    bad = _launch("tpu_vm.sh", [], DRY_RUN="1", TPU_NAME="qr", ZONE="z", NUM_SLICES="two")
    assert bad.returncode != 0 and "NUM_SLICES must be a positive integer" in bad.stderr
