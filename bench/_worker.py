"""A measuring process: `python -m bench._worker MODULE FUNCTION JSON_KWARGS`.

Pins itself to $BENCH_CPU first (the thread variables are set by the parent,
before numpy or TensorFlow are imported), runs `bench.MODULE.FUNCTION(**kwargs)`
and prints its dict result as one JSON line, with the process's RSS and CPU time.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time


def main() -> int:
    module, func, raw = sys.argv[1], sys.argv[2], sys.argv[3]
    cpu = os.environ.get("BENCH_CPU", "")
    if cpu != "" and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
    from bench.common import RESULT_PREFIX, Skip, format_exc, proc_cpu_seconds, proc_status

    t0 = time.perf_counter()
    try:
        res = getattr(importlib.import_module(f"bench.{module}"), func)(**json.loads(raw))
    except Skip as e:
        res = {"_skip": str(e)}
    except Exception:
        res = {"_error": format_exc()}
    st = proc_status()
    res["_proc"] = {
        "rss_mb": st.get("VmRSS"), "hwm_mb": st.get("VmHWM"), "cpu_s": proc_cpu_seconds(), "wall_s": time.perf_counter() - t0,
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }  # fmt: skip
    sys.stdout.write("\n" + RESULT_PREFIX + json.dumps(res, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
