# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""How many intra-op threads torch and onnxruntime use: one policy for every Q-Face command and the pipeline.

The number is, first found wins:

1. an explicit number: `--threads N` on `qface analyze/serve/demo`, or `configure_threads(N)` from Python;
2. the environment variable `QFACE_NUM_THREADS`;
3. `OMP_NUM_THREADS`, when the user set it (its first entry: OpenMP allows a list such as `4,2`);
4. the CPUs this process may use (its CPU affinity, and the CPU quota of its container's cgroup), at most
   `MAX_DEFAULT_THREADS`.

Why not torch's own default: torch starts one thread per physical core of the machine, ignoring a container's CPU
quota (`docker --cpus 2` on a 64-core host gets 64 threads, each descheduled most of the time), and onnxruntime's
default does the same independently, so the two runtimes together oversubscribe the CPUs. The cap is a judgement:
a forward pass over a batch of small face crops, or one detector run, is too little work to split over many threads.
On a host shared with other busy processes fewer threads than cores is faster (measured: docs/threads.md); set
`QFACE_NUM_THREADS=1` there.

Building a face-analysis pipeline applies the policy to torch (`configure_threads()`); the face detector's and the
ONNX backend's onnxruntime sessions take their options from `onnxruntime_session_options()`. Only the standard
library, torch and onnxruntime are imported: this module is copied next to saved models as remote code.
"""

from __future__ import annotations

import argparse
import operator
import os

ENV_VAR = "QFACE_NUM_THREADS"
OMP_ENV_VAR = "OMP_NUM_THREADS"
FLAG = "--threads"
# The default's cap: a forward pass over a batch of face crops is too little work to split over more threads; more
# would add synchronisation and take cores from other processes. An explicit number is not capped.
MAX_DEFAULT_THREADS = 8

# Where a container's CPU quota is: cgroup v2 (`cpu.max`), then v1 (quota and period files).
CGROUP_CPU_FILES = (
    ("/sys/fs/cgroup/cpu.max", None),
    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
)

_explicit_num_threads: int | None = None  # set by configure_threads(n): beats the environment in this process


def parse_num_threads(value, source: str) -> int:
    """`value` as a thread count (an integer >= 1); a ValueError names `source` (a flag or variable) and the value."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = int(value.strip()) if isinstance(value, str) else operator.index(value)  # 2.0 is not accepted
    except (TypeError, ValueError):
        raise ValueError(f"{source} must be a whole number of threads >= 1, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{source} must be >= 1, got {value!r}")
    return number


def add_threads_argument(parser: argparse.ArgumentParser, what: str = "") -> None:
    """`--threads N` on a command's parser (None when not given: the environment or the default decides)."""
    parser.add_argument(
        FLAG,
        type=_threads_flag,
        default=None,
        metavar="N",
        help=f"intra-op threads of torch and onnxruntime{what}; when not given: ${ENV_VAR}, else $OMP_NUM_THREADS, "
        f"else the CPUs this process may use, at most {MAX_DEFAULT_THREADS} (docs/threads.md)",
    )


def _threads_flag(text: str) -> int:
    try:
        return parse_num_threads(text, FLAG)
    except ValueError as error:  # argparse prefixes "argument --threads: "
        raise argparse.ArgumentTypeError(str(error).removeprefix(f"{FLAG} ")) from None


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, lowered to its cgroup's CPU quota (containers)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, quota)
    return max(1, cpus)


def default_num_threads() -> int:
    """The thread count when nothing was asked for: the usable CPUs, at most MAX_DEFAULT_THREADS."""
    return min(usable_cpus(), MAX_DEFAULT_THREADS)


def resolve_num_threads(requested: int | None = None) -> int:
    """The thread count to use: `requested` if given, else QFACE_NUM_THREADS, else OMP_NUM_THREADS, else the
    default (see the module docstring). Raises ValueError naming the flag or variable for a value that is not a
    whole number >= 1."""
    if requested is not None:
        return parse_num_threads(requested, FLAG)
    if os.environ.get(ENV_VAR, "").strip():
        return parse_num_threads(os.environ[ENV_VAR], ENV_VAR)
    if os.environ.get(OMP_ENV_VAR, "").strip():
        return parse_num_threads(os.environ[OMP_ENV_VAR].split(",")[0], OMP_ENV_VAR)
    return default_num_threads()


def configure_threads(requested: int | None = None) -> int:
    """Resolves the thread count, applies it to torch, and returns it. A number given here is kept for this process
    (later calls without one, such as building another pipeline, keep it); without one, the environment is read."""
    global _explicit_num_threads
    if requested is not None:
        _explicit_num_threads = parse_num_threads(requested, FLAG)
    num_threads = configured_num_threads()
    apply_torch_threads(num_threads)
    return num_threads


def configured_num_threads() -> int:
    """The thread count in force: the number given to `configure_threads`, else `resolve_num_threads()`."""
    return _explicit_num_threads if _explicit_num_threads is not None else resolve_num_threads()


def apply_torch_threads(num_threads: int) -> None:
    """Sets torch's intra-op thread count (its inter-op pool is left alone: it can be set only once per process, and
    a Q-Face forward pass runs its operators one after another)."""
    import torch

    num_threads = parse_num_threads(num_threads, "num_threads")
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)


def onnxruntime_session_options(num_threads: int | None = None):
    """`onnxruntime.SessionOptions` for `num_threads` intra-op threads (None: `configured_num_threads()`), one
    inter-op thread and sequential execution: the detector and the Q-Face graph are chains of operators, and every
    extra pool thread competes with torch's threads for the same cores."""
    import onnxruntime

    num_threads = configured_num_threads() if num_threads is None else parse_num_threads(num_threads, "num_threads")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Idle pool threads spin-wait for the next operator by default; between detector runs the CPU is torch's, and a
    # spinning thread would take a core from it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _cgroup_cpu_quota() -> int | None:
    """The CPU quota of this process's cgroup in whole CPUs (rounded up), or None when there is none or it cannot be
    read. cgroup v2: `cpu.max` = "quota period" or "max period"; v1: cpu.cfs_quota_us / cpu.cfs_period_us."""
    for quota_file, period_file in CGROUP_CPU_FILES:
        try:
            with open(quota_file) as file:
                fields = file.read().split()
            if period_file is not None:
                with open(period_file) as file:
                    fields.append(file.read().strip())
            quota, period = fields[0], fields[1]
            if quota in ("max", "-1"):
                return None
            return max(1, -(-int(quota) // int(period)))
        except (OSError, ValueError, IndexError):
            continue
    return None
