"""What every benchmark shares: the run context, machine facts, pinned worker processes,
/proc readings, a daemon harness, cached data and models, and result writing.

Measurements that must run on one core happen in a *worker*: a fresh
`python -m bench._worker MODULE FUNCTION ARGS` process whose BLAS/OpenMP/TF
thread variables are 1 and which pins itself to one CPU with
`os.sched_setaffinity(0, {cpu})` before doing anything else. A worker prints
one JSON result line; `run_worker` returns it as a dict together with the
worker's RSS and CPU time.
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "default"
DEFAULT_DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
PY = sys.executable
RESULT_PREFIX = "@@BENCH-RESULT@@ "
SRC = REPO / "daemon"  # where every process we start imports lograven from; snapshot_sources() moves it
MEASURE_CPU = 0  # the core workers and the daemon under test are pinned to
LOAD_CPU = 1  # the core load generators (log writers, alert readers) run on

THREAD_VARS = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
)  # fmt: skip
# Variables of a service manager or of other tools that must not leak into what we start.
_SCRUB = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "STATE_DIRECTORY", "LISTEN_FDS", "LISTEN_PID")

HDFS_FORMAT = r"regex:^(?P<timestamp>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\S+) (?P<program>\S+): (?P<message>.*)$"
HDFS_STREAM_KEY = r"blk_-?\d+"


class BenchError(Exception):
    """A benchmark could not run; the message says why."""


class Skip(Exception):
    """A benchmark (or part of one) is skipped; the message says why and how to enable it."""


# --------------------------------------------------------------------------- code under test
def snapshot_sources(work: Path) -> dict:
    """Copy daemon/lograven into the work dir and import lograven from there, in this process and in every
    process the run starts: others may edit (or rebuild models in) the working tree during a 20-minute run,
    and one run must measure one version of the code. Returns what was measured: commit, dirty, sha256."""
    global SRC
    dst = work / "src"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(REPO / "daemon" / "lograven", dst / "lograven", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    import hashlib

    h = hashlib.sha256()
    for f in sorted((dst / "lograven").rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(dst)).encode() + b"\0" + f.read_bytes())
    SRC = dst
    sys.path.insert(0, str(dst))
    for name in [m for m in sys.modules if m == "lograven" or m.startswith("lograven.")]:
        del sys.modules[name]
    info = {"snapshot": str(dst), "sha256": h.hexdigest()}
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        info["uncommitted_changes"] = subprocess.run(["git", "status", "--porcelain", "daemon/lograven"], cwd=REPO, capture_output=True,
                                                     text=True, timeout=10).stdout.splitlines()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# --------------------------------------------------------------------------- environment
def bench_env(*, threads: int | None = 1, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for processes we start: one BLAS/OpenMP/TF thread, quiet TF, the repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    if threads is not None:
        for k in THREAD_VARS:
            env[k] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # the snapshot of lograven's sources first (see snapshot_sources), then the repo for `bench`
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONHASHSEED"] = "0"
    if extra:
        env.update(extra)
    return env


def pin(cpu: int = MEASURE_CPU) -> int:
    """Pin the calling process to one CPU (the last one when `cpu` does not exist); returns the CPU."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    all_cpus = list(range(os.cpu_count() or 1))
    target = cpu if cpu in all_cpus else all_cpus[-1]
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {target})
    return target if cpus else -1


def pinner(cpu: int) -> Callable[[], None]:
    """A preexec_fn pinning a child process to `cpu` before it execs."""

    def _pin() -> None:
        pin(cpu)

    return _pin


class pinned_here:
    """Context manager: pin this (the driver) process to a CPU, restore the old affinity after."""

    def __init__(self, cpu: int):
        self.cpu = cpu
        self.old: set[int] | None = None

    def __enter__(self) -> "pinned_here":
        self.old = os.sched_getaffinity(0)
        pin(self.cpu)
        return self

    def __exit__(self, *exc) -> None:
        if self.old:
            os.sched_setaffinity(0, self.old)


# --------------------------------------------------------------------------- /proc
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process in MB, from /proc/PID/status."""
    out: dict[str, float] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "VmSize", "Threads"):
            val = rest.split()[0]
            out[key] = int(val) / 1024.0 if key != "Threads" else int(val)
    return out


def proc_cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a process (all its threads) in seconds, from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def uptime_text() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in loadavg())


def cpu_snapshot() -> tuple[float, float, float]:
    """(machine busy CPU-seconds, this process + its waited-for children's CPU-seconds, wall) for `others_load`."""
    import resource

    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = (sum(vals[:8]) - vals[3] - vals[4]) / CLK_TCK  # all but idle and iowait (guest time is in user)
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return busy, ours, time.monotonic()


def others_load(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
    """Average CPUs kept busy by processes other than the benchmark's own between two snapshots."""
    wall = max(after[2] - before[2], 1e-9)
    return round(max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / wall, 2)


def other_cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of the machine's CPU time busy over `seconds` (from /proc/stat): how loaded it is right now."""

    def snap() -> tuple[int, int]:
        vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals), idle

    t1, i1 = snap()
    time.sleep(seconds)
    t2, i2 = snap()
    return round(1.0 - (i2 - i1) / max(t2 - t1, 1), 3)


# --------------------------------------------------------------------------- machine
def machine_info() -> dict:
    """The machine and software a run measured: CPU model, cores, RAM, Python, numpy and its BLAS."""
    info: dict = {"hostname": socket.gethostname(), "kernel": platform.release(), "python": sys.version.split()[0]}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            k, _, v = line.partition(":")
            v = v.strip()
            if k.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Hypervisor vendor", "L2 cache", "L3 cache"):
                info["cpu_" + k.strip().lower().replace(" ", "_").replace("(s)", "s")] = v
        flags = next((ln.split(":", 1)[1].split() for ln in lscpu.splitlines() if ln.startswith("Flags")), [])
        info["cpu_simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    except (OSError, subprocess.SubprocessError):
        info["cpu_model_name"] = platform.processor()
    info["cores_online"] = os.cpu_count()
    try:
        mem = Path("/proc/meminfo").read_text()
        info["ram_gb"] = round(int(re.search(r"MemTotal:\s+(\d+)", mem).group(1)) / 1024 / 1024, 1)
    except (OSError, AttributeError):
        pass
    info["packages"] = _versions(["numpy", "tensorflow-cpu", "tensorflow", "keras", "tokenizers", "scikit-learn", "drain3", "ai-edge-litert"])
    try:
        out = subprocess.run(
            [PY, "-c", "import json, numpy, threadpoolctl; print(json.dumps(threadpoolctl.threadpool_info()))"],
            capture_output=True, text=True, timeout=60, env=bench_env(threads=None),
        )  # fmt: skip
        pools = json.loads(out.stdout.strip().splitlines()[-1])
        info["numpy_blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "architecture", "threading_layer", "num_threads", "filepath") if p.get(k) is not None}
            for p in pools
        ]
    except Exception as e:  # threadpoolctl is optional
        info["numpy_blas"] = f"threadpoolctl unavailable ({e.__class__.__name__})"
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "daemon"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        info["git_daemon_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _versions(names: Iterable[str]) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return out


def have_package(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# --------------------------------------------------------------------------- workers
def run_worker(
    module: str,
    func: str,
    kwargs: dict | None = None,
    *,
    cpu: int | None = MEASURE_CPU,
    timeout: float = 1800,
    threads: int | None = 1,
    env_extra: dict[str, str] | None = None,
) -> dict:
    """Run `bench.<module>.<func>(**kwargs)` in a fresh process pinned to `cpu`; return its JSON result.

    The result carries `_proc`: the worker's VmRSS/VmHWM (MB) and CPU seconds at the end.
    """
    cmd = [PY, "-m", "bench._worker", module, func, json.dumps(kwargs or {})]
    env = bench_env(threads=threads, extra=env_extra)
    env["BENCH_CPU"] = "" if cpu is None else str(cpu)
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"worker {module}.{func} timed out after {timeout:.0f} s") from e
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            res = json.loads(line[len(RESULT_PREFIX) :])
            if res.get("_skip"):
                raise Skip(res["_skip"])
            if res.get("_error"):
                raise BenchError(f"worker {module}.{func} failed: {res['_error']}\n{_tail(p.stderr)}")
            return res
    raise BenchError(f"worker {module}.{func} exited {p.returncode} without a result:\n{_tail(p.stderr)}\n{_tail(p.stdout)}")


def _tail(text: str, n: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def run_timed(cmd: list[str], *, cpu: int | None = None, env: dict | None = None, stdout=subprocess.DEVNULL,
              timeout: float = 7200, cwd: Path = REPO, sample_rss: bool = True) -> dict:
    """Run a command to completion; wall seconds, the child's own CPU seconds and peak RSS (wait4)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=env or bench_env(), stdout=stdout, stderr=subprocess.PIPE,
                         preexec_fn=pinner(cpu) if cpu is not None else None)  # fmt: skip
    err_chunks: list[bytes] = []
    t = threading.Thread(target=lambda: err_chunks.append(p.stderr.read()), daemon=True)
    t.start()
    samples: list[float] = []
    status = 0
    rusage = None
    deadline = t0 + timeout
    while True:
        pid, status, rusage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if sample_rss:
            s = proc_status(p.pid).get("VmRSS")
            if s:
                samples.append(s)
        if time.perf_counter() > deadline:
            p.kill()
            pid, status, rusage = os.wait4(p.pid, 0)
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    t.join(5)
    return {
        "returncode": p.returncode,
        "wall_s": wall,
        "cpu_s": rusage.ru_utime + rusage.ru_stime if rusage else float("nan"),
        "peak_rss_mb": rusage.ru_maxrss / 1024.0 if rusage else float("nan"),
        "rss_samples_mb": samples,
        "stderr": b"".join(err_chunks).decode("utf-8", "replace"),
    }


def timed_passes(fn: Callable[[], int], min_seconds: float, max_passes: int = 1000) -> dict:
    """Call fn (returns items done) until min_seconds of wall time; rates from wall and process CPU time."""
    items = passes = 0
    w0, c0 = time.perf_counter(), time.process_time()
    while True:
        items += fn()
        passes += 1
        wall = time.perf_counter() - w0
        if wall >= min_seconds or passes >= max_passes:
            break
    cpu = time.process_time() - c0
    return {"items": items, "passes": passes, "wall_s": wall, "cpu_s": cpu,
            "per_s_wall": items / wall if wall else float("nan"), "per_s_cpu": items / cpu if cpu else float("nan")}  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------- daemon harness
def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, val = line.rpartition(" ")
        try:
            out[key] = float(val)
        except ValueError:
            continue
    return out


def metric_sum(metrics: dict[str, float], name: str) -> float:
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


class Daemon:
    """`lograven run` on a temp dir: config written, NOTIFY_SOCKET bound, READY=1 awaited, /proc readable."""

    def __init__(self, root: Path, paths: list[str], *, model: Path = DEFAULT_MODEL, cpu: int | None = MEASURE_CPU,
                 runtime: dict | None = None, start_position: str = "end"):  # fmt: skip
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.alerts = root / "alerts.jsonl"
        self.port = free_port()
        self.cpu = cpu
        cfg = {
            "sources": [{"paths": paths, "format": "syslog", "start_position": start_position}],
            "model": str(model),
            "state_dir": str(root / "state"),
            "alerts": {
                "syslog": {"enabled": False},
                "jsonl": {"enabled": True, "path": str(self.alerts)},
                "stdout": {"enabled": False},
                "dedup_window_seconds": 0,
                "max_per_minute": 1_000_000_000,
            },
            "metrics": {"enabled": True, "listen": f"127.0.0.1:{self.port}"},
        }
        if runtime:
            cfg["runtime"] = runtime
        self.config = root / "config.yaml"
        self.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.proc: subprocess.Popen | None = None
        self.sock_path = str(root / "notify.sock")
        self.notify: socket.socket | None = None
        self.ready_s: float | None = None
        self.t_start = 0.0

    def start(self, timeout: float = 120.0) -> float:
        """Start the daemon; returns seconds from process start to READY=1."""
        if os.path.exists(self.sock_path):
            os.unlink(self.sock_path)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.sock_path)
        env = bench_env(extra={"NOTIFY_SOCKET": self.sock_path})
        self.t_start = time.perf_counter()
        self.proc = subprocess.Popen(
            [PY, "-m", "lograven", "run", "--config", str(self.config)], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=open(self.root / "daemon.log", "wb"),
            preexec_fn=pinner(self.cpu) if self.cpu is not None else None,
        )  # fmt: skip
        self.notify.settimeout(0.2)
        deadline = self.t_start + timeout
        while time.perf_counter() < deadline:
            try:
                data = self.notify.recv(4096)
            except socket.timeout:
                if self.proc.poll() is not None:
                    raise BenchError(f"lograven run exited {self.proc.returncode} before READY=1:\n{self.log_tail()}")
                continue
            if b"READY=1" in data.split(b"\n"):
                self.ready_s = time.perf_counter() - self.t_start
                return self.ready_s
        self.stop()
        raise BenchError(f"lograven run sent no READY=1 within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return _tail((self.root / "daemon.log").read_text(errors="replace"))
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            return parse_metrics(r.read().decode())

    def status(self) -> dict[str, float]:
        return proc_status(self.pid)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        return self.proc.returncode if self.proc else None

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def bundle_loads(path: Path) -> tuple[bool, str]:
    """Does this lograven load the bundle? (in a subprocess: the driver stays free of model imports)"""
    r = subprocess.run([PY, "-c", f"from lograven.bundle import load_bundle; load_bundle({str(path)!r})"],
                       cwd=REPO, env=bench_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    return r.returncode == 0, _tail(r.stderr, 1)


MARKER = b"lograven-bench-marker"


def marker_line(i: int) -> bytes:
    """An anomaly line whose alert we can find: a message type no model has seen (unknown_type fires)."""
    return b"Jun  9 06:06:20 web01 benchprobe[4242]: " + MARKER + b" %09d quux frobnicated the zorblax\n" % i


class LineWriter(threading.Thread):
    """Appends log lines to files at `rate` lines/s (round robin), in 10 ms ticks, plus timed marker lines.

    `rate` and `marker_every` may be changed while it runs; `markers` maps marker id -> perf_counter()
    just before its write.
    """

    def __init__(self, paths: list[Path], lines: list[bytes], rate: float = 0.0, *, tick: float = 0.01):
        super().__init__(name="bench-writer", daemon=True)
        self.paths, self.lines, self.rate, self.tick = paths, lines, rate, tick
        self.marker_every: float | None = None
        self.markers: dict[int, float] = {}
        self.written = 0
        self.bytes = 0
        self.stop_event = threading.Event()
        self._next_id = 0
        self._pos = 0
        self.behind_s = 0.0  # how far the writer fell behind its schedule (it must not be the bottleneck)

    def run(self) -> None:
        fds = [os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) for p in self.paths]
        try:
            last = time.perf_counter()
            owed = 0.0
            next_marker = last
            rr = 0
            n_lines = len(self.lines)
            while not self.stop_event.is_set():
                now = time.perf_counter()
                owed += (now - last) * self.rate
                last = now
                if self.marker_every and now >= next_marker:
                    i = self._next_id
                    self._next_id += 1
                    self.markers[i] = time.perf_counter()
                    os.write(fds[0], marker_line(i))
                    next_marker = max(next_marker + self.marker_every, now)
                elif not self.marker_every:
                    next_marker = now
                k = int(owed)
                if k:
                    owed -= k
                    per: list[list[bytes]] = [[] for _ in fds]
                    for _ in range(k):
                        per[rr].append(self.lines[self._pos])
                        self._pos = (self._pos + 1) % n_lines
                        rr = (rr + 1) % len(fds)
                    for fd, chunk in zip(fds, per):
                        if chunk:
                            data = b"".join(chunk)
                            os.write(fd, data)
                            self.bytes += len(data)
                    self.written += k
                spent = time.perf_counter() - now
                if spent > self.tick:
                    self.behind_s += spent - self.tick
                self.stop_event.wait(max(0.0, self.tick - spent))
        finally:
            for fd in fds:
                os.close(fd)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


class AlertWatcher(threading.Thread):
    """Tails the daemon's alerts.jsonl; records perf_counter() when each marker's alert appears."""

    def __init__(self, path: Path, poll: float = 0.001):
        super().__init__(name="bench-alerts", daemon=True)
        self.path, self.poll = path, poll
        self.seen: dict[int, float] = {}
        self.alerts = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.path.exists() and not self.stop_event.is_set():
            time.sleep(self.poll)
        with open(self.path, "rb") as f:
            buf = b""
            while not self.stop_event.is_set():
                data = f.read()
                if not data:
                    time.sleep(self.poll)
                    continue
                now = time.perf_counter()
                buf += data
                *complete, buf = buf.split(b"\n")
                self.alerts += len(complete)
                for line in complete:
                    j = line.rfind(MARKER)  # in "line", the last key (an unknown line's "pattern" has it too, masked)
                    if j >= 0:
                        i = int(line[j + len(MARKER) + 1 : j + len(MARKER) + 10])
                        self.seen.setdefault(i, now)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


def read_lines(path: Path, limit: int | None = None) -> list[bytes]:
    out = []
    with open(path, "rb") as f:
        for line in f:
            out.append(line)
            if limit and len(out) >= limit:
                break
    return out


# --------------------------------------------------------------------------- context
@dataclass
class Context:
    """One run: mode, directories, data location, and caches of generated data and trained bundles."""

    smoke: bool
    big: bool
    work: Path
    data: Path | None
    log: Callable[[str], None] = print
    _trained: dict[str, dict] = field(default_factory=dict)
    shared: dict = field(default_factory=dict)  # results benchmarks hand to later ones (e.g. throughput -> ratios)

    def seconds(self, full: float, smoke: float = 1.0) -> float:
        """A measuring duration: `full` normally, about a second with --smoke."""
        return smoke if self.smoke else full

    def lines(self, full: int, smoke: int) -> int:
        return smoke if self.smoke else full

    # ---- data
    def generated(self, n: int, seed: int = 7) -> Path:
        """`n` normal generator lines (seed 7 by default: not the seed models/default was trained on)."""
        path = self.work / "data" / f"gen-s{seed}-{n}.log"
        if not path.exists():
            from lograven.generator import LogGenerator

            path.parent.mkdir(parents=True, exist_ok=True)
            gen = LogGenerator(seed=seed)
            tmp = path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                left = n
                while left > 0:
                    chunk = gen.lines(min(50_000, left))
                    f.write("\n".join(chunk) + "\n")
                    left -= len(chunk)
            tmp.replace(path)
        return path

    def shared_file(self, rel: str) -> Path | None:
        if self.data is None:
            return None
        p = self.data / rel
        return p if p.exists() else None

    # ---- trained bundles (cached per run, or across runs with --work)
    def train(self, name: str, logfiles: list[Path], *, config: dict | None = None, args: list[str] | None = None,
              threads: int | None = None) -> dict:  # fmt: skip
        """`lograven train` into work/models/<name>; wall time, peak RSS and the summary (memoised)."""
        if name in self._trained:
            return self._trained[name]
        out = self.work / "models" / name
        info_path = out.parent / f"{name}.train.json"
        if out.exists() and info_path.exists() and bundle_loads(out)[0]:
            info = json.loads(info_path.read_text())
            info["cached"] = True
            self._trained[name] = info
            return info
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [PY, "-m", "lograven", "-q", "train", "--json", "--out", str(out)]
        if config:
            cfg_path = out.parent / f"{name}.yaml"
            cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
            cmd += ["--config", str(cfg_path)]
        cmd += list(args or []) + [str(p) for p in logfiles]
        self.log(f"    training {name} ({', '.join(p.name for p in logfiles)}) ...")
        stdout_path = out.parent / f"{name}.stdout"
        with open(stdout_path, "wb") as so:
            r = run_timed(cmd, env=bench_env(threads=threads), stdout=so)
        if r["returncode"] != 0:
            raise BenchError(f"lograven train ({name}) exited {r['returncode']}:\n{_tail(r['stderr'])}")
        summary = json.loads(stdout_path.read_text())
        info = {
            "name": name, "path": str(out), "wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "peak_rss_mb": r["peak_rss_mb"],
            "summary": summary, "threads": threads or "TF default (all cores)", "config": config or {}, "args": args or [],
            "loadavg_after": loadavg(),
        }  # fmt: skip
        info_path.write_text(json.dumps(info, indent=1))
        self._trained[name] = info
        return info

    def default_model(self) -> Path:
        """models/default when it loads; else the same recipe (models/build.sh) trained into the work dir."""
        if "default_model" in self.shared:
            return self.shared["default_model"]
        ok, why = bundle_loads(DEFAULT_MODEL)
        if ok:
            # a copy: models/default may be rebuilt while the run goes on
            path = self.work / "models" / "default-snapshot"
            if path.exists():
                shutil.rmtree(path)
            shutil.copytree(DEFAULT_MODEL, path)
            self.shared["default_model_source"] = str(DEFAULT_MODEL)
        else:
            self.log(f"    models/default does not load ({why}); building it as models/build.sh does")
            n = self.lines(100_000, 2_000)  # the same run as the training benchmark's (one training, not two)
            info = self.train(f"train-{n}", [self.generated(n, seed=1)],
                              config={"training": {"sequence": {"epochs": 1}, "autoencoder": {"epochs": 1}}} if self.smoke else None)
            path = Path(info["path"])
            self.shared.setdefault("notes", []).append(f"models/default did not load; used {path} built by the recipe of models/build.sh")
        self.shared["default_model"] = path
        return path

    def seed_size_bundle(self) -> dict:
        """A bundle with seed 003's GRU (1024 units, embedding 256) and seed 000's embedding (256, vocab up to
        30000), trained for one epoch: speed does not depend on training quality."""
        n = self.lines(20_000, 1_500)
        cfg = {"training": {
            "sequence": {"units": 1024, "embedding_dim": 256, "epochs": 1},
            "autoencoder": {"vocab_size": 30000, "embedding_dim": 256, "epochs": 1},
        }}  # fmt: skip
        if self.smoke:  # a GRU-1024 epoch is at least 40 batches of 64 windows of 64 steps: make them small
            cfg["training"]["sequence"].update(window=16, batch_size=4)
            cfg["training"]["autoencoder"].update(batch_size=16)
        return self.train(f"seed-size-{n}", [self.generated(n, seed=1)], config=cfg)

    def hdfs_bundle(self) -> dict | None:
        """A bundle trained on ../shared/data/hdfs/hdfs_dev.log (block-id streams), when the data is there."""
        src = self.shared_file("hdfs/hdfs_dev.log")
        if src is None:
            return None
        cfg = None
        if self.smoke:
            head = self.work / "data" / "hdfs-head-5000.log"
            if not head.exists():
                head.parent.mkdir(parents=True, exist_ok=True)
                with open(src, "rb") as f:
                    head.write_bytes(b"".join(f.readline() for _ in range(5000)))
            src, cfg = head, {"training": {"sequence": {"epochs": 1}, "autoencoder": {"epochs": 1}}}
        return self.train(f"hdfs-{src.stem}", [src], config=cfg, args=["--format", HDFS_FORMAT, "--stream-key", HDFS_STREAM_KEY])


# --------------------------------------------------------------------------- results
def row(metric: str, value, unit: str = "", *, target: str | None = None, ok: bool | None = None, note: str = "",
        noisy: bool = False) -> dict:  # fmt: skip
    """One line of the results table. `noisy`: sensitive to other load on the machine (re-run quiet)."""
    return {"metric": metric, "value": value, "unit": unit, "target": target, "ok": ok, "note": note, "noisy": noisy}


def fmt_value(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 1:
            return f"{v:.2f}"
        if a >= 0.01:
            return f"{v:.3f}"
        return f"{v:.2g}"
    return str(v)


def render_markdown(result: dict) -> str:
    """The whole run as markdown: machine, load, one table per benchmark."""
    m = result["machine"]
    lines = [
        f"# lograven benchmark results — {result['started']}",
        "",
        f"Command: `{result['command']}` ({'smoke mode: ~1 s per measurement, numbers are not meaningful' if result['smoke'] else 'full mode'})",
        "",
        f"Machine: {m.get('cpu_model_name', '?')}, {m.get('cores_online')} cores online"
        f" ({m.get('cpu_hypervisor_vendor', 'bare metal') or 'bare metal'}; L2 {m.get('cpu_l2_cache', '?')}, L3 {m.get('cpu_l3_cache', '?')};"
        f" {', '.join(m.get('cpu_simd', []))}), {m.get('ram_gb')} GB RAM, Python {m.get('python')},"
        f" numpy {m.get('packages', {}).get('numpy', '?')}.",
        "",
        _source_text(result.get("source") or {}),
        "",
        f"numpy BLAS: {_blas_text(m.get('numpy_blas'))}; pinned measurements run on CPU {MEASURE_CPU} with one BLAS/OpenMP/TF thread.",
        "",
        f"Load at start: `{result['uptime_start']}`; at end: `{result.get('uptime_end', '')}`"
        f"; machine busy {result.get('busy_start', '?')} → {result.get('busy_end', '?')} (fraction of all CPUs over 1 s).",
        "",
    ]
    for note in result.get("notes") or []:
        lines += [f"**Note:** {note}", ""]
    lines += [
        "Figures marked † depend on other load on the machine (wall-clock rates and latencies); re-run them on a quiet machine.",
        "",
    ]
    for name, sec in result["benchmarks"].items():
        lines.append(f"## {sec.get('title', name)}")
        lines.append("")
        la = sec.get("loadavg_start"), sec.get("loadavg_end")
        status = sec.get("status")
        other = f"; other processes kept {sec['others_cpus']:.2f} of {m.get('cores_online')} CPUs busy meanwhile" if "others_cpus" in sec else ""
        lines.append(f"`{name}` — {status}, {sec.get('seconds', 0):.0f} s; load average {la[0]} → {la[1]}{other}")
        lines.append("")
        if sec.get("message"):
            lines.append(f"> {sec['message'].strip()}".replace("\n", "\n> "))
            lines.append("")
        rows = sec.get("rows") or []
        if rows:
            lines.append("| metric | value | unit | target | met | note |")
            lines.append("|---|---:|---|---|---|---|")
            for r in rows:
                met = "" if r.get("ok") is None else ("✅" if r["ok"] else "❌")
                dag = " †" if r.get("noisy") else ""
                lines.append(f"| {r['metric']} | {fmt_value(r['value'])}{dag} | {r.get('unit', '')} | {r.get('target') or ''} | {met} | {r.get('note', '')} |")
            lines.append("")
        for extra in sec.get("markdown_extra", []):
            lines.append(extra)
            lines.append("")
    return "\n".join(lines) + "\n"


def _source_text(src: dict) -> str:
    if not src:
        return "Code: the working tree (no snapshot)."
    dirty = src.get("uncommitted_changes") or []
    return (f"Code: lograven at commit {src.get('git_commit', '?')}"
            + (f" plus uncommitted changes to {len(dirty)} file(s)" if dirty else "")
            + f", copied at the start of the run (sources sha256 {src.get('sha256', '?')[:16]}…) and imported from the copy by every process.")  # fmt: skip


def _blas_text(blas) -> str:
    if not isinstance(blas, list):
        return str(blas)
    return "; ".join(f"{b.get('internal_api')} {b.get('version', '')} ({b.get('architecture', '?')}, {b.get('threading_layer', '?')})" for b in blas) or "none found"


def write_results(result: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["stamp"]
    jp, mp = out_dir / f"{stamp}.json", out_dir / f"{stamp}.md"
    jp.write_text(json.dumps(_clean(result), indent=1, default=_json_default, allow_nan=False))
    mp.write_text(render_markdown(result))
    return jp, mp


def _clean(o):
    """NaN and infinities become null: the JSON stays strict."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, float) and math.isnan(o):
        return None
    return str(o)


def now_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def format_exc() -> str:
    return traceback.format_exc(limit=8)


def make_work_dir(path: str | None) -> tuple[Path, bool]:
    """The work directory (data and models made for the run); temporary unless given."""
    if path:
        p = Path(path).resolve()
        p.mkdir(parents=True, exist_ok=True)
        return p, False
    return Path(tempfile.mkdtemp(prefix="lograven-bench-")), True


def rmtree(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)
