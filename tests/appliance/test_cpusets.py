"""Disjoint CPU sets: the engine and the job worker pin themselves to their own cores at start."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from appliance.cpusets import CpuSetError, cpu_list_parse, cpu_set_for

PROBE = """
import json, os, sys
sys.argv = ["manage.py", sys.argv[1]]
import django
django.setup()
from appliance.cpusets import usable_cpu_count
print(json.dumps({"cpus": sorted(os.sched_getaffinity(0)), "threads": usable_cpu_count(),
                  "omp": os.environ.get("OMP_NUM_THREADS"), "spin": os.environ.get("GOMP_SPINCOUNT")}))
"""


def test_auto_splits_the_cores_and_lists_are_read_as_written():
    two, eight = frozenset({0, 1}), frozenset(range(8))
    assert cpu_set_for("engine", engine="auto", worker="auto", cpus=two) == {0}
    assert cpu_set_for("worker", engine="auto", worker="auto", cpus=two) == {1}
    assert cpu_set_for("engine", engine="auto", worker="auto", cpus=eight) == {0, 1, 2, 3}
    assert cpu_set_for("engine", engine="", worker="", cpus=eight) is None  # unset: a process alone
    assert cpu_set_for("worker", engine="auto", worker="auto", cpus=eight) == {4, 5, 6, 7}
    assert cpu_set_for("engine", engine="auto", worker="auto", cpus=frozenset({3})) is None  # one core
    assert cpu_set_for("worker", engine="auto", worker="all", cpus=eight) is None
    assert cpu_set_for("engine", engine="0-2,6", worker="auto", cpus=eight) == {0, 1, 2, 6}
    assert cpu_list_parse("1, 3-4") == {1, 3, 4}
    for bad in ("x", "3-1", "-2", ","):
        with pytest.raises(CpuSetError):
            cpu_list_parse(bad)
    with pytest.raises(CpuSetError, match="names none of this machine's CPUs"):
        cpu_set_for("engine", engine="64-65", worker="auto", cpus=two)


def _probe(command: str, **env: str) -> dict:
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "HEARTH_ENGINE_OMP_SPINCOUNT")
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, command],
        cwd=django_settings.BASE_DIR,
        env={**inherited, "DJANGO_SETTINGS_MODULE": "appliance.settings", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to split")
def test_the_engine_and_the_worker_start_on_disjoint_cores(tmp_path):
    from appliance.cpusets import cpu_env

    mine = sorted(os.sched_getaffinity(0))
    alone = _probe("inference_serve", HEARTH_HOME=str(tmp_path / "instance"))  # a dedicated engine host
    assert alone["cpus"] == mine and alone["threads"] == len(mine)
    home = {"HEARTH_HOME": str(tmp_path / "instance"), **cpu_env()}  # as `serve` and the units start them
    engine = _probe("inference_serve", **home)
    worker = _probe("qcluster", **home)
    assert engine["cpus"] and worker["cpus"] and not set(engine["cpus"]) & set(worker["cpus"])
    assert sorted(engine["cpus"] + worker["cpus"]) == mine
    assert engine["threads"] == len(engine["cpus"]) and engine["omp"] == str(len(engine["cpus"]))
    other = _probe("migrate", **home)  # neither role: left alone
    assert other["cpus"] == mine
    trains_alone = _probe("qcluster", **{**home, "HEARTH_WORKER_CPUS": "all"})  # the demo's worker
    assert trains_alone["cpus"] == mine
    chosen = _probe("inference_serve", **{**home, "HEARTH_ENGINE_CPUS": str(mine[-1])})
    assert chosen["cpus"] == [mine[-1]] and chosen["threads"] == 1


def test_the_engine_keeps_libgomps_spin_unless_told(tmp_path):
    """Like llama-server, the engine leaves OpenMP's spin to libgomp; the setting shortens it, and an
    explicit GOMP_SPINCOUNT still wins. The worker is never touched."""
    home = {"HEARTH_HOME": str(tmp_path / "instance")}
    assert _probe("inference_serve", **home)["spin"] is None
    assert _probe("inference_serve", **home, HEARTH_ENGINE_OMP_SPINCOUNT="30000")["spin"] == "30000"
    told = _probe("inference_serve", **home, HEARTH_ENGINE_OMP_SPINCOUNT="30000", GOMP_SPINCOUNT="7")
    assert told["spin"] == "7"
    assert _probe("qcluster", **home, HEARTH_ENGINE_OMP_SPINCOUNT="30000")["spin"] is None


# A thread count from the machine's cores, or a fixed one, ignores the CPU set the process was given.
MACHINE_CORES = re.compile(
    r"\b(?:os|multiprocessing)\.cpu_count\(|\bfrom (?:os|multiprocessing) import [^\n]*\bcpu_count\b"
    r"|\b(?:n_threads(?:_batch)?|nthread)\s*=\s*\d"
)
# Not a thread count: Tabby's health answer reports the machine's cores as Tabby does.
MACHINE_CORES_REPORTED = {"inference/api/tabby.py": 1}


def machine_core_uses(root: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for package in ("appliance", "trainer", "inference", "webui"):
        for path in sorted((root / package).rglob("*.py")):
            name = path.relative_to(root).as_posix()
            if name == "appliance/cpusets.py":  # the one module that reads the machine's count
                continue
            if hits := len(MACHINE_CORES.findall(path.read_text())):
                found[name] = hits
    return found


def test_no_module_sizes_threads_by_the_machines_cores(tmp_path):
    planted = tmp_path / "trainer" / "evaluation"
    planted.mkdir(parents=True)
    (planted / "harness.py").write_text("llm = open_(p, n_threads=os.cpu_count() or 1, n_threads_batch=4)\n")
    (tmp_path / "appliance").mkdir()
    (tmp_path / "appliance" / "cpusets.py").write_text("n = os.cpu_count()\n")
    assert machine_core_uses(tmp_path) == {"trainer/evaluation/harness.py": 2}

    assert machine_core_uses(Path(django_settings.BASE_DIR)) == MACHINE_CORES_REPORTED
