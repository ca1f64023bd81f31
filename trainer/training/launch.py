"""Multi-process training with the same trainer: `torchrun --nproc_per_node N -m trainer.training.launch
SPEC.json` (or `accelerate launch -m ...`). SPEC names the base folder, the dataset folder, the
settings and the output folder; rank 0 writes the adapter and summary.json.

A training run with HEARTH_TRAINING_GPUS > 1 is launched this way by its worker
(`trainer.training.distributed`), and SPEC then also names:
- `events`: a JSON-lines file rank 0 appends its log lines and progress to, for the worker to read;
- `stop_file`: a file whose appearance (the admin cancelled) stops every rank at the next step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

EXIT_FAILED = 2  # the run failed for a reason written to the events file
EXIT_CANCELLED = 3  # the stop file appeared; a checkpoint was written first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("spec", type=Path, help="JSON with hf_path, dataset_dir, settings, out_dir")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())

    from appliance.errors import HearthError
    from trainer.tools.dataset_files import dataset_accepted_read, dataset_files_read
    from trainer.training.config import LoraSettings
    from trainer.training.loop import TrainingCancelled, train
    from trainer.training.methods import TrainingMethod, method_choose

    master = os.environ.get("RANK", "0") == "0"
    events = Path(spec["events"]) if spec.get("events") else None

    def event(kind: str, value) -> None:
        if master and events is not None:
            with events.open("a") as f:
                f.write(json.dumps({kind: value}) + "\n")

    def log(line: str) -> None:
        print(line, flush=True)
        event("log", line)

    stop_file = Path(spec["stop_file"]) if spec.get("stop_file") else None
    settings = LoraSettings.from_dict(spec.get("settings", {}))
    dataset = Path(spec["dataset_dir"])
    chosen = spec.get("method")
    method = (
        TrainingMethod(**chosen)
        if chosen
        else method_choose(settings.method, quantization=settings.quantization, hf_path=spec["hf_path"])
    )
    try:
        summary = train(
            hf_path=spec["hf_path"],
            train_files=dataset_files_read(dataset, "train"),
            heldout_files=dataset_files_read(dataset, "heldout"),
            accepted_files=dataset_accepted_read(dataset),
            settings=settings,
            method=method,
            out_dir=Path(spec["out_dir"]),
            on_progress=lambda p: event("progress", asdict(p)),
            should_stop=lambda: stop_file is not None and stop_file.exists(),
            log=log,
        )
    except TrainingCancelled:
        return EXIT_CANCELLED
    except HearthError as exc:
        event("error", str(exc))
        print(f"failed: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except Exception as exc:  # a bug: its reason on the run's row, its traceback in this rank's log
        event("error", f"a training process failed: {type(exc).__name__}: {exc}")
        raise
    if master:  # one summary line, not one per process
        print(
            json.dumps({k: summary[k] for k in ("steps", "processes", "tokens_per_s", "best_eval_loss")}),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
