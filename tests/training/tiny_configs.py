"""The demo configs shrunk further for tests (tiny encoder, 28 px crops, a few steps)."""

from configs import student as student_config

TINY_MODEL = {
    "encoder": "custom",
    "dim": 64,
    "depth": 4,
    "heads": 1,
    "layers": (0, 1, 2, 3),
    "features": 16,
    "out_channels": (8, 16, 32, 64),
}


def _shrink(config, steps: int):
    config.total_steps = steps
    config.log_every = 1
    config.checkpoint_every = 2
    config.image_every = 2
    config.model.custom = TINY_MODEL
    config.data.crop = 28
    config.data.labeled_batch = 8  # divisible over the 8 test devices
    config.data.labeled[0][0].update(num_scenes=16, height=32, width=36)
    # FSDP over pairs of the 8 test devices, small enough a threshold to split the tiny
    # model's matrices: every stage run in the tests goes through the sharded path.
    config.mesh.update(fsdp=2, fsdp_min_size=1024)
    return config


def tiny_student(steps: int = 2):
    """Student demo config (with teacher, pseudo-label and eval sub-configs), tiny."""
    config = _shrink(student_config.get_config("demo"), steps)
    config.data.unlabeled_batch = 16
    config.data.unlabeled.update(num_scenes=16, height=32, width=36)
    _shrink(config.teacher_stage, steps)
    config.pseudo_stage.update(shard_size=6, batch_size=4, input_size=28)
    config.pseudo_stage.data.unlabeled.update(num_scenes=16, height=32, width=36)
    config.final_eval.update(input_size=28)
    config.final_eval.data.update(num_scenes=4, height=32, width=36)
    return config
