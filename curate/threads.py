"""CPU threads of a run: how many intra-op threads torch uses, and how idle OpenMP threads wait.

Measured with ``bench/threads.py`` (README, "Threads"): with OpenMP's default wait policy, torch's
threads spin at every parallel region's barrier, so when another process holds one of the cores the
thread sharing it is descheduled while its partner spins, and small-batch work (condensation's
evaluation networks, a ConvNet epoch) ran several times slower on two threads than on one. With
``OMP_WAIT_POLICY=PASSIVE`` idle threads sleep instead, and two threads stay about as fast as one
on a busy core while keeping their speed-up on an idle machine. So a run uses every CPU it may
(``os.sched_getaffinity``, capped by a cgroup CPU quota) with the passive wait policy.

OpenMP (GNU libgomp in torch's CPU wheels, and FAISS's own copy) reads ``OMP_WAIT_POLICY`` once,
when the library loads: :func:`prefer_passive_waiting` must run before ``import torch``. The CLI
calls it first thing; the runner calls it too, which helps library users who have not imported
torch yet.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WAIT_POLICY_VAR = "OMP_WAIT_POLICY"
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def prefer_passive_waiting() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user set a policy; False when torch is already loaded
    (then it no longer takes effect in this process)."""
    if "torch" in sys.modules:
        return False
    os.environ.setdefault(WAIT_POLICY_VAR, "PASSIVE")
    return True


def available_cpus(cgroup_cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota if one is set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        cpus = os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def resolve_threads(threads: int | str) -> int:
    """``"auto"`` becomes :func:`available_cpus`; a number is kept."""
    if threads == "auto":
        return available_cpus()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be 'auto' or a whole number >= 1, got {threads!r}")
    return threads


def apply_threads(threads: int | str) -> dict[str, Any]:
    """Set torch's intra-op thread count; returns what a step's ``step.json`` records about threads."""
    import torch

    count = resolve_threads(threads)
    cpus = available_cpus()
    if count > cpus:
        log.warning("threads: %d but this process may use %d CPUs; oversubscribed threads wait on each other",
                    count, cpus)
    torch.set_num_threads(count)
    policy = os.environ.get(WAIT_POLICY_VAR, "default")
    if count > 1 and policy.upper() != "PASSIVE":
        log.info("torch uses %d threads with OpenMP wait policy '%s': on a shared CPU, idle threads spin; set "
                 "OMP_WAIT_POLICY=PASSIVE before torch is imported (the curate CLI does)", count, policy)
    return {"torch": count, "requested": threads, "cpus": cpus, "omp_wait_policy": policy}
