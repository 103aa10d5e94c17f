"""Child process of the fuzz suite: load many hostile files with one reader, one at a time.

    python load_many.py KIND AS_LIMIT_MIB FILE...

KIND picks the reader: `pth` (`torch_pickle.load_state_dict`) or `safetensors`
(`safetensors_io.load_safetensors`), which import numpy and the readers only, or `model`
(`pretrained.load_depth_anything` on folders and weights files, `pretrained.read_tensors` on
sharded-safetensors indexes), which imports jax. AS_LIMIT_MIB > 0 caps the address space
(RLIMIT_AS) before the reader is imported, so a runaway allocation is a MemoryError; 0 leaves
it (jax maps more than it uses).

For each file it prints `start <file>` and, once the reader returns, one JSON line:
`outcome` ('ok', 'error' or 'memory'), `error_type`, `clean` (the error is a ValueError or
OSError, what the CLIs print as one line), `message`, `seconds`, `peak_rss_mib`; after a
MemoryError it prints a line prepared beforehand and exits. It keeps no timer: the parent
(`harness.py`) enforces wall time and memory from outside and kills it.
"""

import json
import os
import resource
import sys
import time

kind, limit_mib = sys.argv[1], int(sys.argv[2])
if limit_mib > 0:
    resource.setrlimit(resource.RLIMIT_AS, (limit_mib << 20, limit_mib << 20))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

if kind == "pth":
    from dajax.weights.torch_pickle import load_state_dict as load
elif kind == "safetensors":
    from dajax.weights.safetensors_io import load_safetensors as load
else:
    from dajax.weights.pretrained import load_depth_anything, read_tensors

    def load(path):
        """The tensors of an index file, the model of anything else."""
        return (read_tensors if path.endswith(".index.json") else load_depth_anything)(path)


def peak_rss_mib() -> float:
    """This process's peak resident memory. Not `ru_maxrss`: Linux carries the parent's peak
    into it across fork + exec, while `VmHWM` belongs to this program's own address space."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


for path in sys.argv[3:]:
    print("start", path, flush=True)
    result = {"path": path, "outcome": "ok", "error_type": None, "clean": False, "message": None}
    out_of_memory = json.dumps({**result, "outcome": "memory", "seconds": -1}) + "\n"
    start = time.perf_counter()
    try:
        loaded = load(path)
        del loaded
    except MemoryError:  # the heap may be exhausted or fragmented: report and stop
        os.write(1, out_of_memory.encode())
        os._exit(0)
    except Exception as e:  # noqa: BLE001 - the parent judges every error
        result.update(
            outcome="error",
            error_type=type(e).__name__,
            clean=isinstance(e, ValueError | OSError),
            message=str(e),
        )
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result), flush=True)
