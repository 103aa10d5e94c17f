"""Child process of the fuzz suite: load many checkpoint files under a memory and time limit.

    python load_many.py LIMIT_MIB SECONDS_PER_FILE FILE...

Caps its address space at LIMIT_MIB (RLIMIT_AS) before importing the readers, then for each
file prints `start <file>` and, once loaded, one JSON line: `outcome` ('ok', 'error',
'memory' or 'hang'), `error_type`, `message`, `seconds`, `peak_rss_mib`. A crash signal stops
the process, so the last `start` line names the file that caused it. `.pth` files go through
`load_state_dict`, `.safetensors` through `load_safetensors`.
"""

import json
import os
import resource
import signal
import sys
import time

limit_mib, per_file = int(sys.argv[1]), float(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit_mib << 20, limit_mib << 20))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from dajax.weights.safetensors_io import load_safetensors  # noqa: E402
from dajax.weights.torch_pickle import load_state_dict  # noqa: E402


class Hang(BaseException):  # not Exception: the readers turn those into errors
    pass


def _alarm(*_):
    raise Hang


def peak_rss_mib() -> float:
    """This process's peak resident memory. Not `ru_maxrss`: Linux carries the parent's peak
    into it across fork + exec, while `VmHWM` belongs to this program's own address space."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


signal.signal(signal.SIGALRM, _alarm)
for path in sys.argv[3:]:
    print("start", path, flush=True)
    load = load_safetensors if path.endswith(".safetensors") else load_state_dict
    result = {"path": path, "outcome": "ok", "error_type": None, "message": None}
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, per_file)
    try:
        loaded = load(path)
        del loaded
    except Hang:
        result["outcome"] = "hang"
    except MemoryError:
        result["outcome"] = "memory"
    except Exception as e:  # noqa: BLE001 - the parent judges every error
        result.update(outcome="error", error_type=type(e).__name__, message=str(e))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result), flush=True)
