"""The shipped experiment configs, one `ml_collections` file per stage (`get_config(args)`),
installed beside `dajax` so `python -m dajax.main --config=configs/student.py` (or
`--config=student`) finds them from any folder; `common` holds what the stages share, and
`standin_encoder.safetensors` is the demo's stand-in for DINOv2 (`configs/pretrain.py`)."""
