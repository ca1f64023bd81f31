"""A training run on several GPUs (HEARTH_TRAINING_GPUS > 1): the worker launches the same trainer
under torchrun, one process per GPU, and follows it as it follows an in-process run.

- Each process loads its own 4-bit copy of the base onto its own GPU (LOCAL_RANK), trains its share
  of every step (DDP, NCCL), and rank 0 alone writes checkpoints, the adapter and summary.json into
  the run's folder, so what comes out is exported, evaluated and served like any run.
- Rank 0 appends its log lines and progress to an events file the worker reads into the run's log
  and progress points; a cancel is a stop file every rank checks at each step (together, so none is
  left waiting on the others), after a checkpoint.
- torchrun dies with the worker (`trainer.training.torchrun`), so a killed worker leaves no
  ranks training behind; the watchdog requeues the run and the next attempt resumes from the
  checkpoint, with the same number of processes.
- Without CUDA the processes are CPU processes over gloo: what the tests run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

from django.conf import settings as django_settings

from appliance.cpusets import usable_cpu_count
from appliance.errors import TrainingError
from trainer.training.config import LoraSettings
from trainer.training.launch import EXIT_CANCELLED, EXIT_FAILED
from trainer.training.loop import Progress, TrainingCancelled

POLL_S = 0.5
STOP_CHECK_S = 2.0


def gpus_check(processes: int, device: str) -> None:
    """Refuse, before anything starts, a run asking for more GPUs than this host has."""
    if device != "cuda":
        return
    import torch

    have = torch.cuda.device_count()
    if have < processes:
        raise TrainingError(
            f"HEARTH_TRAINING_GPUS is {processes}, but this host has {have} GPU(s): set it to at most "
            f"{have}, or run the training queue on a host with {processes}."
        )


def train_distributed(
    *,
    processes: int,
    hf_path: str,
    dataset_dir: Path,
    settings: LoraSettings,
    device: str,
    out_dir: Path,
    method=None,
    on_progress: Callable[[Progress], None],
    should_stop: Callable[[], bool],
    log: Callable[[str], None],
) -> dict:
    """Train in `processes` torchrun processes; returns rank 0's summary (raises TrainingError or
    TrainingCancelled as `train` does)."""
    gpus_check(processes, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    events, stop = out_dir / "launch-events.jsonl", out_dir / "launch-stop"
    events.unlink(missing_ok=True)
    stop.unlink(missing_ok=True)
    spec = out_dir / "launch.json"
    spec.write_text(
        json.dumps(
            {
                "hf_path": hf_path,
                "dataset_dir": str(dataset_dir),
                "out_dir": str(out_dir),
                "settings": settings.as_dict(),
                # Every rank trains with the method the worker chose (and recorded on the run).
                "method": asdict(method) if method is not None else None,
                "events": str(events),
                "stop_file": str(stop),
            }
        )
    )
    ranks = out_dir / "ranks"
    base_dir = str(django_settings.BASE_DIR)
    env = {
        **os.environ,
        # The worker's cores shared among its processes (each would take them all otherwise).
        "OMP_NUM_THREADS": str(max(1, usable_cpu_count() // processes)),
        "PYTHONPATH": os.pathsep.join(p for p in (base_dir, os.environ.get("PYTHONPATH", "")) if p),
    }
    command = [
        sys.executable,
        "-m",
        "trainer.training.torchrun",  # torchrun, dying with this worker
        "--standalone",  # rendezvous on a free loopback port: two runs on one host never collide
        "--nproc_per_node",
        str(processes),
        "--log-dir",
        str(ranks),
        "--redirects",
        "3",  # each rank's stdout and stderr in its own files under ranks/
        "-m",
        "trainer.training.launch",
        str(spec),
    ]
    log(f"launching {processes} training processes (torchrun, {'NCCL' if device == 'cuda' else 'gloo'})")
    with (out_dir / "torchrun.log").open("ab") as launcher_log:
        proc = subprocess.Popen(  # our own interpreter and module, no shell
            command,
            cwd=base_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=launcher_log,
            stderr=subprocess.STDOUT,
        )
        error = _follow(proc, events, stop, on_progress, should_stop, log)
    code = proc.returncode
    if code == 0:
        return json.loads((out_dir / "summary.json").read_text())
    if code == EXIT_CANCELLED or (stop.exists() and code != EXIT_FAILED):
        raise TrainingCancelled("The run was cancelled.")
    if error:
        raise TrainingError(error)
    raise TrainingError(
        f"The {processes}-process training run exited with code {code}. Last output: "
        f"{_tail(out_dir) or '(none)'}"
    )


def _follow(proc, events: Path, stop: Path, on_progress, should_stop, log) -> str | None:
    """Relay rank 0's events until the launcher exits; returns the error rank 0 reported, if any."""
    offset, error, next_stop_check = 0, None, 0.0
    names = {f.name for f in fields(Progress)}
    while True:
        done = proc.poll() is not None
        if events.exists():
            with events.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1  # only whole lines; a partial one is read next time
            offset += end
            for line in chunk[:end].splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if "log" in item:
                    log(str(item["log"]))
                elif "progress" in item and isinstance(item["progress"], dict):
                    on_progress(Progress(**{k: v for k, v in item["progress"].items() if k in names}))
                elif "error" in item:
                    error = str(item["error"])
        if done:
            return error
        now = time.monotonic()
        if now >= next_stop_check:
            next_stop_check = now + STOP_CHECK_S
            if not stop.exists() and should_stop():
                stop.touch()
                log("cancel requested: every process stops after its current step")
        time.sleep(POLL_S)


def _tail(out_dir: Path, chars: int = 1500) -> str:
    """The end of the launcher's and the ranks' error output: what a failed run's reason shows."""
    parts = []
    for path in [out_dir / "torchrun.log", *sorted((out_dir / "ranks").glob("*/attempt_*/*/stderr.log"))]:
        if path.exists():
            text = path.read_text(errors="replace").strip()
            if text:
                parts.append(text[-chars:])
    return " | ".join(parts)[-chars:]
