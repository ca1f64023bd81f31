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
    spec.write_text(json.dumps({
        "hf_path": str(micro_dir), "dataset_dir": str(data), "out_dir": str(tmp_path / "run"),
        "settings": {"max_steps": 4, "seq_len": 64, "grad_accum": 1, "eval_sequences": 2, "warmup_steps": 1},
    }))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(django_settings.BASE_DIR)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "trainer.training.launch", str(spec)],
        cwd=django_settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith('{"steps"')))
    assert result["processes"] == 2 and result["steps"] == 4
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").exists()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["processes"] == 2
