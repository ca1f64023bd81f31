"""Disjoint CPU sets for the engine and the job worker on one box.

OpenMP work collapses when two thread pools share the same cores (a LoRA run fell from ~250 to ~14
tokens/s beside one compiler job), so by default the engine and the worker each get their own
cores: the engine the first half of the cores this process may use, the worker the rest. Each
process pins itself at start (`appliance.apps`) and sizes its threads to its set.

    HEARTH_ENGINE_CPUS / HEARTH_WORKER_CPUS = auto | all | a list such as 0-3,8

Unset means every core for a process started alone (a dedicated engine or worker host);
`manage.py serve` (`cpu_env`) and the appliance's units (install.sh writes auto into hearth.env),
which run both on one box, use auto.
"""

from __future__ import annotations

import os

ROLES = ("engine", "worker")


class CpuSetError(ValueError):
    pass


def cpu_list_parse(text: str) -> frozenset[int]:
    """'0-3,8' → {0, 1, 2, 3, 8}."""
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise CpuSetError(f"{text!r} is not a CPU list (write it as 0-3,8).") from None
        if first < 0 or last < first:
            raise CpuSetError(f"{part!r} in {text!r} is not a CPU range.")
        cpus.update(range(first, last + 1))
    if not cpus:
        raise CpuSetError(f"{text!r} names no CPU.")
    return frozenset(cpus)


def available_cpus() -> frozenset[int]:
    return frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()


def cpu_set_for(
    role: str, *, engine: str, worker: str, cpus: frozenset[int] | None = None
) -> frozenset[int] | None:
    """The cores `role` runs on, or None for no pinning ('all', or fewer than two cores)."""
    cpus = available_cpus() if cpus is None else cpus
    spec = {"engine": engine, "worker": worker}[role].strip().lower() or "all"
    if spec == "all" or not cpus:
        return None
    if spec != "auto":
        wanted = cpu_list_parse(spec)
        if not wanted & cpus:
            raise CpuSetError(
                f"HEARTH_{role.upper()}_CPUS={spec} names none of this machine's CPUs {sorted(cpus)}."
            )
        return wanted & cpus
    ordered = sorted(cpus)
    if len(ordered) < 2:
        return None
    half = max(1, len(ordered) // 2)
    return frozenset(ordered[:half] if role == "engine" else ordered[half:])


def cpu_affinity_apply(role: str) -> frozenset[int] | None:
    """Pin this process (and the threads and children it starts after) to its role's set, and size
    OpenMP and torch thread pools to it. Returns the set, or None when unpinned."""
    from django.conf import settings

    cpus = cpu_set_for(role, engine=settings.HEARTH_ENGINE_CPUS, worker=settings.HEARTH_WORKER_CPUS)
    if cpus is None:
        return None
    os.sched_setaffinity(0, cpus)
    os.environ.setdefault("OMP_NUM_THREADS", str(len(cpus)))  # before torch or llama.cpp start a pool
    return cpus


def engine_openmp_tune() -> None:
    """Before llama.cpp loads in the engine process: how long its OpenMP workers spin when idle
    (HEARTH_ENGINE_OMP_SPINCOUNT, libgomp's GOMP_SPINCOUNT; an explicit GOMP_SPINCOUNT wins)."""
    from django.conf import settings

    if settings.HEARTH_ENGINE_OMP_SPINCOUNT:
        os.environ.setdefault("GOMP_SPINCOUNT", settings.HEARTH_ENGINE_OMP_SPINCOUNT)


def usable_cpu_count() -> int:
    """The cores this process may run on (its affinity), not the machine's."""
    return len(available_cpus()) or os.cpu_count() or 1


def llama_threads(n_threads: int | None = None) -> dict[str, int]:
    """llama.cpp's two thread counts for a context, both sized to this process's CPU set (or to
    `n_threads`): llama-cpp-python fills a missing `n_threads_batch` with the machine's core count,
    which beside the engine would spin twice as many threads as the worker has cores."""
    n = max(1, n_threads or usable_cpu_count())
    return {"n_threads": n, "n_threads_batch": n}


def cpu_env() -> dict[str, str]:
    """The CPU-set settings for the engine and worker that one box starts together: auto unless set."""
    from django.conf import settings

    return {
        "HEARTH_ENGINE_CPUS": settings.HEARTH_ENGINE_CPUS or "auto",
        "HEARTH_WORKER_CPUS": settings.HEARTH_WORKER_CPUS or "auto",
    }
