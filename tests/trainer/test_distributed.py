"""The scale-out path: the same trainer on two CPU processes (gloo) through torchrun, by hand and as a
training run the worker launches itself (HEARTH_TRAINING_GPUS=2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings


def test_two_process_gloo_training(micro_dir, tmp_path):
    data = _dataset(tmp_path)
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "hf_path": str(micro_dir),
                "dataset_dir": str(data),
                "out_dir": str(tmp_path / "run"),
                "settings": {
                    "method": "lora",  # the adapter path; the Django-run test below takes auto's full fine-tune
                    "max_steps": 4,
                    "seq_len": 64,
                    "grad_accum": 1,
                    "eval_sequences": 2,
                    "warmup_steps": 1,
                },
            }
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(django_settings.BASE_DIR)}
    logs = tmp_path / "logs"
    # Each rank's stdout and stderr go to their own files (--redirects 3): the two processes share no
    # stream, so one's output can never land inside a line of the other's.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "--log-dir",
            str(logs),
            "--redirects",
            "3",
            "-m",
            "trainer.training.launch",
            str(spec),
        ],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = {rank: _rank_file(logs, rank, "stdout") for rank in (0, 1)}
    assert proc.returncode == 0, (
        proc.stderr[-2000:] + _rank_file(logs, 0, "stderr")[-2000:] + _rank_file(logs, 1, "stderr")[-2000:]
    )
    summaries = {
        rank: [line for line in text.splitlines() if line.startswith('{"steps"')]
        for rank, text in out.items()
    }
    assert len(summaries[0]) == 1 and summaries[1] == [], summaries  # rank 0 alone prints the summary
    assert "resumed" not in out[0] and "training tokens" in out[0] and out[1] == "", out
    result = json.loads(summaries[0][0])
    assert result["processes"] == 2 and result["steps"] == 4
    run = tmp_path / "run"
    assert (run / "adapter" / "adapter_config.json").exists()
    assert json.loads((run / "adapter" / "meta.json").read_text())["processes"] == 2
    assert json.loads((run / "summary.json").read_text())["processes"] == 2
    assert sorted(p.name for p in run.iterdir()) == [
        "adapter",
        "summary.json",
    ]  # no checkpoint or partial left


def _rank_file(logs, rank: int, stream: str) -> str:
    """What one rank wrote to stdout or stderr (torchrun: LOGS/<run id>/attempt_0/<rank>/<stream>.log)."""
    found = list(logs.glob(f"*/attempt_*/{rank}/{stream}.log"))
    return found[0].read_text(errors="replace") if found else ""


# --- a training run with HEARTH_TRAINING_GPUS > 1: the worker launches torchrun itself ----------


@pytest.mark.django_db(transaction=True)  # the queue runs jobs on commit
def test_a_run_with_two_processes_is_trained_exported_evaluated_and_gated_like_any_run(
    code_repo, micro_base, settings
):
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.models import ModelVersion, TrainingRun
    from trainer.training.config import LoraSettings
    from trainer.training.services import training_run_start

    settings.HEARTH_TRAINING_GPUS = 2
    dataset = dataset_build(repositories=[repository_register(source=str(code_repo))])
    lora = LoraSettings(max_steps=6, seq_len=64, grad_accum=1, eval_sequences=2, warmup_steps=1)
    run = training_run_start(dataset=dataset, base=micro_base, settings=lora)  # runs the chain (sync queue)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.status_reason
    assert run.summary["processes"] == 2 and run.summary["steps"] == 6
    assert "in 2 processes" in run.log and "launching 2 training processes (torchrun, gloo)" in run.log
    assert "training tokens" in run.log  # rank 0's own log lines reach the run's log
    assert run.progress.filter(step=6).exists()  # and its progress, as points on the run's chart
    meta = json.loads((Path(run.adapter_path) / "meta.json").read_text())  # adapter/ or model/ (full)
    assert meta["processes"] == 2
    assert not (Path(run.path) / "checkpoint").exists()
    version = ModelVersion.objects.get(run=run)
    assert version.status in {"candidate", "promoted"}, version.status_reason
    assert version.reports.get().scores.arms  # evaluated, and gated by its best arm
    assert Path(version.gguf_path).exists()


def test_a_cancel_stops_every_process_after_a_checkpoint(micro_dir, tmp_path):
    from trainer.training.config import LoraSettings
    from trainer.training.distributed import train_distributed
    from trainer.training.loop import TrainingCancelled

    data = _dataset(tmp_path)
    lines = []
    with pytest.raises(TrainingCancelled):
        train_distributed(
            processes=2,
            hf_path=str(micro_dir),
            dataset_dir=data,
            settings=LoraSettings(max_steps=100_000, seq_len=64, grad_accum=1, eval_sequences=2),
            device="cpu",
            out_dir=tmp_path / "run",
            on_progress=lambda p: None,
            should_stop=lambda: True,
            log=lines.append,
        )
    assert (tmp_path / "run" / "checkpoint" / "meta.json").exists()  # the next attempt resumes from it
    assert any("cancel requested" in line for line in lines)


def test_a_base_that_will_not_load_fails_the_run_with_rank_zeros_reason(tmp_path):
    from appliance.errors import TrainingError
    from trainer.training.config import LoraSettings
    from trainer.training.distributed import train_distributed

    hostile = tmp_path / "base"
    hostile.mkdir()
    (hostile / "config.json").write_text('{"model_type": "llama", "vocab_size": -1}')
    with pytest.raises(TrainingError) as err:
        train_distributed(
            processes=2,
            hf_path=str(hostile),
            dataset_dir=_dataset(tmp_path),
            settings=LoraSettings(max_steps=2, seq_len=64),
            device="cpu",
            out_dir=tmp_path / "run",
            on_progress=lambda p: None,
            should_stop=lambda: False,
            log=lambda line: None,
        )
    assert str(hostile) in str(err.value)


def test_more_gpus_than_the_host_has_is_refused_before_anything_starts(monkeypatch):
    import torch

    from appliance.errors import TrainingError
    from trainer.training.distributed import gpus_check

    gpus_check(8, "cpu")  # CPU processes: as many as asked
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    gpus_check(2, "cuda")
    with pytest.raises(TrainingError, match="HEARTH_TRAINING_GPUS is 4, but this host has 2 GPU"):
        gpus_check(4, "cuda")


def test_the_ranks_die_with_a_killed_worker(micro_dir, tmp_path):
    """SIGKILL the process that launched torchrun (the worker): no rank keeps training."""
    data = _dataset(tmp_path)
    spec = tmp_path / "spec.json"
    events = tmp_path / "events.jsonl"
    spec.write_text(
        json.dumps(
            {
                "hf_path": str(micro_dir),
                "dataset_dir": str(data),
                "out_dir": str(tmp_path / "run"),
                "settings": {"max_steps": 100_000, "seq_len": 64, "grad_accum": 1, "eval_sequences": 2},
                "events": str(events),
            }
        )
    )
    launcher = (
        "import subprocess, sys; subprocess.Popen([sys.executable, '-m', 'trainer.training.torchrun', "
        f"'--standalone', '--nproc_per_node', '2', '-m', 'trainer.training.launch', {str(spec)!r}]).wait()"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(django_settings.BASE_DIR)}
    worker = subprocess.Popen([sys.executable, "-c", launcher], cwd=django_settings.BASE_DIR, env=env)
    try:
        deadline = time.monotonic() + 180
        while not (events.exists() and '"progress"' in events.read_text()):
            assert time.monotonic() < deadline and worker.poll() is None, "the ranks never reported progress"
            time.sleep(0.2)
        assert len(set(_training(spec)) - {worker.pid}) == 3  # torchrun and its two ranks
        worker.kill()
        worker.wait()
        deadline = time.monotonic() + 60
        while _training(spec) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _training(spec) == []
    finally:
        for pid in _training(spec):
            os.kill(pid, signal.SIGKILL)


def _training(spec: Path) -> list[int]:
    """Processes (torchrun, ranks) whose command line names `spec`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            named = proc.name.isdigit() and str(spec).encode() in (proc / "cmdline").read_bytes()
            if named and (proc / "stat").read_text().split(") ")[1][0] != "Z":  # not a zombie
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _dataset(tmp_path: Path) -> Path:
    from tests.conftest import CODE_FILES, stdlib_files

    data = tmp_path / "dataset"
    data.mkdir(exist_ok=True)
    files = [{"path": p, "text": t} for p, t in stdlib_files(CODE_FILES[:6]).items()]
    (data / "train.jsonl").write_text("".join(json.dumps(f) + "\n" for f in files[1:]))
    (data / "heldout.jsonl").write_text(json.dumps(files[0]) + "\n")
    return data
