"""The scale-out path: the same trainer on two CPU processes (gloo) through torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from django.conf import settings as django_settings


def test_two_process_gloo_training(micro_dir, tmp_path):
    from tests.conftest import CODE_FILES, stdlib_files

    data = tmp_path / "dataset"
    data.mkdir()
    files = [{"path": p, "text": t} for p, t in stdlib_files(CODE_FILES[:6]).items()]
    (data / "train.jsonl").write_text("".join(json.dumps(f) + "\n" for f in files[1:]))
    (data / "heldout.jsonl").write_text(json.dumps(files[0]) + "\n")
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "hf_path": str(micro_dir),
                "dataset_dir": str(data),
                "out_dir": str(tmp_path / "run"),
                "settings": {
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
