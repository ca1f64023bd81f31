"""Multi-process training with the same trainer: `torchrun --nproc_per_node N -m trainer.training.launch
SPEC.json` (or `accelerate launch -m ...`). SPEC names the base folder, the dataset folder, the
settings and the output folder; rank 0 writes the adapter and summary.json."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("spec", type=Path, help="JSON with hf_path, dataset_dir, settings, out_dir")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())

    from trainer.datasets.builder import dataset_files_read
    from trainer.training.config import LoraSettings
    from trainer.training.loop import train
    from trainer.training.modeling import method_choose

    settings = LoraSettings.from_dict(spec.get("settings", {}))
    dataset = Path(spec["dataset_dir"])
    summary = train(
        hf_path=spec["hf_path"],
        train_files=dataset_files_read(dataset, "train"),
        heldout_files=dataset_files_read(dataset, "heldout"),
        settings=settings,
        method=method_choose(settings.quantization),
        out_dir=Path(spec["out_dir"]),
        log=print,
    )
    if os.environ.get("RANK", "0") == "0":  # one summary line, not one per process
        print(
            json.dumps({k: summary[k] for k in ("steps", "processes", "tokens_per_s", "best_eval_loss")}),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
