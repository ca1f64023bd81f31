"""The evaluation Hearth runs after each training, as bench-onebox's child process runs it.

`python -c` in bench_onebox pins the child to the worker's cores and calls `main([spec.json])`: the
base's GGUF scored by the evaluation harness (`trainer.evaluation.harness.models_compare`) on the
bench dataset's held-out lines and multi-line spans, with repository context from the dataset's code
index when HEARTH_CONTEXT_EVAL is on, as `trainer.evaluation.services.evaluation_run` scores it. Each
log line goes to the spec's events file; the summary (tasks scored, seconds, lines per second) to
its summary file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def files_read(dataset_dir: Path, split: str) -> list[dict]:
    """One split of the bench's dataset folder (one JSON file record a line)."""
    with (dataset_dir / f"{split}.jsonl").open() as f:
        return [json.loads(line) for line in f]


def tasks_scored(report: dict) -> int:
    """Every held-out task (a line or a multi-line span) each arm of each model scored."""
    return sum(
        arm["tasks"] for model in report["models"].values() for arm in model["line_completion"].values()
    )


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    import django

    django.setup()  # the settings the worker reads: flash attention, context evaluation and format
    from django.conf import settings

    from appliance.llm.fim import fim_format_get
    from trainer.context.index import ContextIndex
    from trainer.evaluation.harness import Candidate, models_compare
    from trainer.evaluation.tasks import line_tasks_build, span_tasks_build

    heldout = files_read(Path(spec["dataset_dir"]), "heldout")
    tasks = line_tasks_build(heldout, max_tasks=spec["max_tasks"])
    spans = span_tasks_build(heldout, max_tasks=spec["max_span_tasks"])
    index = ContextIndex(Path(spec["index"])) if settings.HEARTH_CONTEXT_EVAL else None
    model = Candidate("base", Path(spec["gguf"]), fim_format_get(spec["fim_format"]))
    with Path(spec["events"]).open("a") as events:

        def log(line: str) -> None:
            events.write(json.dumps({"log": line}) + "\n")
            events.flush()

        started = time.monotonic()
        report = models_compare(
            [model],
            tasks,
            [f["text"] for f in heldout],
            log=log,
            span_tasks=spans,
            index=index,
            context_format=settings.HEARTH_CONTEXT_FORMAT,
        )
        seconds = time.monotonic() - started
    scored = tasks_scored(report)
    summary = {
        "arms": sorted(report["models"]["base"]["line_completion"]),
        "tasks_scored": scored,
        "seconds": round(seconds, 2),
        "lines_per_s": round(scored / seconds, 3),
    }
    Path(spec["summary"]).write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
