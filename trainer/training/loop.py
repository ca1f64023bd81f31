"""The training loop: packed FIM sequences, LoRA or full fine-tuning, held-out loss, best checkpoint,
resumable.

Pure stage code: paths and callbacks in, a summary dict out. The caller owns the database.
Read `train` first, then `_loop`; every other function is one step of theirs.

On disk, in `out_dir`: `checkpoint/` (state.pt: trainable weights, optimizer, scheduler; meta.json:
the `TrainState`; under full fine-tuning every weight), replaced crash-safely every `checkpoint_every_s`
and deleted at the end; the best held-out checkpoint with its meta.json: `adapter/` (LoRA, QLoRA) or
`model/` (full fine-tuning: a whole HF model folder with its tokenizer, exported without a merge);
`summary.json`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import resource
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from appliance import paths
from appliance.cpusets import usable_cpu_count
from appliance.errors import TrainingError
from appliance.llm.fim import FILE_SEP_TOKENS
from trainer.context.index import context_snippets
from trainer.training.config import LoraSettings
from trainer.training.modeling import TrainingMethod, base_load_for_training
from trainer.training.samples import CONTEXT_SHARE as SAMPLE_CONTEXT_SHARE
from trainer.training.samples import PieceEncoder, accepted_samples, pack, samples_build

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN_GUESS = 3.0
LOSS_WINDOW = 8  # steps averaged into the reported training loss
ACCEPTED_SEED = 7  # accepted completions' dice (FIM order) apart from the files'


class TrainingCancelled(TrainingError):
    """The run was asked to stop."""


@dataclass
class Progress:
    step: int
    total_steps: int
    loss: float | None
    tokens_per_s: float | None
    eta_s: float | None
    peak_memory_mb: float
    eval_loss: float | None = None


@dataclass
class TrainState:
    """Where the run is and how its held-out loss went: what a checkpoint's meta.json holds."""

    step: int = 0
    best_eval: float | None = None
    bad_evals: int = 0
    history: list[dict] = field(default_factory=list)


@dataclass
class Ddp:
    """This process's place among data-parallel processes (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0  # this process's device on its host (torchrun's LOCAL_RANK)
    device: str = "cpu"  # where collectives' tensors live: cpu (gloo) or cuda:<local_rank> (NCCL)

    @property
    def master(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one (a cancel seen by one rank stops all)."""
        if self.world <= 1:
            return flag
        import torch
        import torch.distributed as dist

        t = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def shared(self, value: float | None) -> float | None:
        """Rank 0's value on every process, so that decisions made from it (the best adapter, an
        early stop) are the same everywhere: ranks that disagreed would wait on each other forever."""
        if self.world <= 1:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([float("nan") if value is None else value], dtype=torch.float64, device=self.device)
        dist.broadcast(t, src=0)
        out = float(t.item())
        return None if math.isnan(out) else out


@dataclass
class Job:
    """What one run trains with; `model` is `core` (the peft model, or the plain model under full
    fine-tuning) or its DDP wrapper; `output` the folder name of what is kept (adapter or model)."""

    model: Any
    core: Any
    tokenizer: Any
    fmt: Any
    added: list[int]
    device: str
    autocast: Any
    method: TrainingMethod | None = None
    rows: list[list[int]] = field(default_factory=list)
    eval_rows: list[list[int]] = field(default_factory=list)
    pack_stats: dict = field(default_factory=dict)
    accepted: int = 0  # accepted completions among the training samples
    total: int = 0
    learning_rate: float = 0.0
    optimizer: Any = None
    scheduler: Any = None
    trainable: list = field(default_factory=list)


@dataclass
class Meter:
    """Timers and the window of tokens and losses behind the progress rows."""

    started: float = field(default_factory=time.monotonic)
    last_report: float = field(default_factory=time.monotonic)
    last_checkpoint: float = field(default_factory=time.monotonic)
    window_start: float = field(default_factory=time.monotonic)
    window_tokens: int = 0
    losses: list[float] = field(default_factory=list)  # this attempt's steps (not kept across a resume)

    def recent_loss(self) -> float | None:
        tail = self.losses[-LOSS_WINDOW:]
        return sum(tail) / len(tail) if tail else None


def train(
    *,
    hf_path: str,
    train_files: list[dict],
    heldout_files: list[dict],
    settings: LoraSettings,
    accepted_files: list[dict] | None = None,
    method: TrainingMethod,
    out_dir: Path,
    on_progress: Callable[[Progress], None] = lambda p: None,
    should_stop: Callable[[], bool] = lambda: False,
    log: Callable[[str], None] = logger.info,
    progress_every_s: float = 3.0,
) -> dict:
    """Fine-tune and write `out_dir/adapter` or, under full fine-tuning, `out_dir/model` (the best
    held-out checkpoint). Resumes from
    `out_dir/checkpoint` when one exists. `accepted_files` (a dataset's accepted completions) join the
    training samples only. Under torchrun every process trains its share of each
    step; rank 0 alone logs, reports progress and writes files."""
    import torch

    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    # The worker's own CPU set, not the machine's, shared among the processes torchrun started here.
    torch.set_num_threads(max(1, usable_cpu_count() // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with ddp_session(method.device) as ddp:
        if not ddp.master:
            log = on_progress = _quiet
        job = job_load(hf_path, settings, method, ddp, log, t0)
        data_prepare(job, out_dir, train_files, heldout_files, settings, ddp, log, accepted_files or [])
        optimizer_make(job, settings)
        state = checkpoint_load(out_dir, job, ddp, log) or TrainState()
        meter = Meter()
        stopped_early = _loop(
            job, state, meter, settings, ddp, out_dir, on_progress, should_stop, log, progress_every_s
        )
        if not (out_dir / method.output).exists():
            adapter_save(out_dir, job, state, settings, ddp)
        ddp.barrier()
        if ddp.master:
            _checkpoint_delete(out_dir)
        summary = summary_make(job, state, meter, settings, method, ddp, stopped_early, t0)
    if ddp.master:
        paths.atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


def _loop(
    job: Job,
    state: TrainState,
    meter: Meter,
    settings: LoraSettings,
    ddp: Ddp,
    out_dir: Path,
    on_progress: Callable[[Progress], None],
    should_stop: Callable[[], bool],
    log: Callable[[str], None],
    progress_every_s: float,
) -> bool:
    """Optimizer steps until the last one, an early stop (returns True) or a cancel (raises)."""
    eval_every = settings.eval_every_steps or max(1, job.total // 8)
    job.model.train()
    stopped_early = False
    while state.step < job.total:
        step_loss = train_step(job, state.step, settings, ddp, meter)
        state.step += 1
        meter.losses.append(step_loss)
        now = time.monotonic()
        last = state.step == job.total

        eval_loss = None
        if state.step % eval_every == 0 or last:
            eval_loss = ddp.shared(held_out_loss(job))
            if eval_record(state, eval_loss, step_loss):
                adapter_save(out_dir, job, state, settings, ddp)
            if state.bad_evals >= settings.early_stopping_patience:
                log(
                    f"early stop at step {state.step}: held-out loss has not improved "
                    f"for {state.bad_evals} evaluations (best {state.best_eval:.4f})"
                )
                stopped_early = True

        if now - meter.last_report >= progress_every_s or eval_loss is not None or last:
            on_progress(progress_make(job, state, meter, now, eval_loss))
        if now - meter.last_checkpoint >= settings.checkpoint_every_s and not last:
            checkpoint_save(out_dir, job, state, ddp)
            meter.last_checkpoint = now
        if stopped_early:
            break
        if ddp.any(should_stop()):
            checkpoint_save(out_dir, job, state, ddp)
            raise TrainingCancelled("The run was cancelled.")
    return stopped_early


# --- data-parallel processes ---------------------------------------------------------------------


@contextmanager
def ddp_session(device: str) -> Iterator[Ddp]:
    """The process group when launched by torchrun/accelerate (WORLD_SIZE > 1): gloo on CPU, NCCL
    on CUDA, set up here and torn down on the way out (unless the caller had set it up). One
    process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Ddp()
        return
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    where = "cpu"
    if device == "cuda":
        import torch

        torch.cuda.set_device(local_rank)  # each process on its own GPU, NCCL's buffers there too
        where = f"cuda:{local_rank}"
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    try:
        yield Ddp(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, device=where)
        if owned:
            # Every rank is done with the group before any tears it down: a gloo rank whose peer had
            # already closed its connections died at exit now and then ("terminate called without an
            # active exception", SIGABRT), failing a run that had finished.
            dist.barrier()
    finally:
        if owned:
            dist.destroy_process_group()


def _quiet(*args, **kwargs) -> None:
    """The log and progress callback of every process but rank 0."""


# --- model, data, optimizer ----------------------------------------------------------------------


def job_load(
    hf_path: str,
    settings: LoraSettings,
    method: TrainingMethod,
    ddp: Ddp,
    log: Callable[[str], None],
    t0: float,
) -> Job:
    """The base with LoRA (or every weight trainable), on its device, wrapped for DDP when there are
    several processes."""
    import torch

    core, tokenizer, fmt, added = base_load_for_training(hf_path, settings, method)
    if method.device == "cuda" and not method.four_bit:
        core.to(ddp.device if ddp.world > 1 else "cuda")
    model = core
    if ddp.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        on_gpu = method.device == "cuda"
        model = DistributedDataParallel(core, device_ids=[ddp.local_rank] if on_gpu else None)
    bf16 = method.autocast_bf16 or (method.device == "cuda" and method.four_bit)
    autocast = (
        torch.autocast(device_type=method.device, dtype=torch.bfloat16)
        if bf16
        else torch.autocast(device_type=method.device, enabled=False)
    )
    trainable = sum(p.numel() for p in core.parameters() if p.requires_grad)
    log(
        f"loaded base ({method.name} on {method.device}) in {time.monotonic() - t0:.1f} s; "
        f"{trainable:,} of {sum(p.numel() for p in core.parameters()):,} parameters trainable; FIM format {fmt.name}{' (tokens added: ' + str(len(added)) + ')' if added else ''}"
    )
    return Job(
        model=model,
        core=core,
        tokenizer=tokenizer,
        fmt=fmt,
        added=added,
        device=method.device,
        autocast=autocast,
        method=method,
    )


def sequences_prepare(
    files: list[dict],
    tokenizer,
    fmt,
    eot_id: int,
    settings: LoraSettings,
    seed: int,
    index=None,
    accepted: Sequence[dict] = (),
):
    """Packed token rows of `files`; with `index` (a code index of the training files), a share of
    the samples carry retrieved snippets of other files, never of their own. `accepted` (accepted
    completions) add one FIM sample each (prefix completion when `fim_rate` is 0)."""
    window_chars = int(settings.seq_len * CHARS_PER_TOKEN_GUESS)
    context_of = None
    if index is not None and settings.context_rate > 0:

        def context_of(record: dict, text: str) -> list[tuple[str, str]]:
            return context_snippets(
                index,
                text,
                filepath=record["path"],
                language=record.get("language", ""),
                budget_chars=int(window_chars * SAMPLE_CONTEXT_SHARE),
            )

    samples = samples_build(
        files,
        fmt,
        fim_rate=settings.fim_rate,
        spm_rate=settings.spm_rate,
        multiline_rate=settings.multiline_rate,
        window_chars=window_chars,
        seed=seed,
        context_rate=settings.context_rate,
        context_of=context_of,
        file_sep=file_sep_token(tokenizer, fmt),
    )
    samples += accepted_samples(
        accepted,
        fmt if settings.fim_rate > 0 else None,
        random.Random(seed + ACCEPTED_SEED),
        spm_rate=settings.spm_rate,
        window_chars=window_chars,
    )
    return pack(PieceEncoder(tokenizer, eot_id).encode_many(samples), settings.seq_len)


def file_sep_token(tokenizer, fmt) -> str | None:
    """The vocabulary's file-separator token, found as the serving prompt builder finds it."""
    vocab = tokenizer.get_vocab()
    seps = ([fmt.file_sep] if fmt is not None and fmt.file_sep else []) + list(FILE_SEP_TOKENS)
    return next((t for t in seps if t in vocab), None)


def training_index_build(out_dir: Path, files: list[dict], rank: int):
    """A code index of the training files for context samples (each process its own copy)."""
    from trainer.context.index import ContextIndex, index_build

    path = out_dir / f"context-index.rank{rank}.sqlite"
    index_build(path, files)
    return ContextIndex(path)


def data_prepare(
    job: Job,
    out_dir: Path,
    train_files: list[dict],
    heldout_files: list[dict],
    settings: LoraSettings,
    ddp: Ddp,
    log: Callable[[str], None],
    accepted: Sequence[dict] = (),
) -> None:
    """Packed training and held-out sequences, the step count and the learning rate. Accepted
    completions join the training sequences only."""
    eot_id = job.tokenizer.convert_tokens_to_ids(job.fmt.eot)
    index = training_index_build(out_dir, train_files, ddp.rank) if settings.context_rate > 0 else None
    job.rows, job.pack_stats = sequences_prepare(
        train_files, job.tokenizer, job.fmt, eot_id, settings, settings.seed, index=index, accepted=accepted
    )
    job.accepted = len(accepted)
    if index is not None:
        index.path.unlink(missing_ok=True)  # only sample construction reads it
    eval_rows, _ = sequences_prepare(
        heldout_files, job.tokenizer, job.fmt, eot_id, settings, settings.seed + 1
    )
    job.eval_rows = eval_rows[: settings.eval_sequences]
    if not job.rows:
        raise TrainingError("The dataset produced no training tokens.")
    job.total = settings.steps_for(job.pack_stats["tokens"], processes=ddp.world)
    if job.method is not None and job.method.full:
        n_params = sum(p.numel() for p in job.core.parameters())
        job.learning_rate = settings.learning_rate_for(n_params, "full")
    else:
        frozen = sum(p.numel() for p in job.core.parameters() if not p.requires_grad)
        job.learning_rate = settings.learning_rate_for(frozen)
    log(
        f"{job.pack_stats['tokens']} training tokens in {len(job.rows)} packed sequences of {settings.seq_len} "
        f"(padding {job.pack_stats['padding_fraction']:.3f}); {job.total} steps"
        f"{f' on {ddp.world} processes' if ddp.world > 1 else ''} at learning rate {job.learning_rate:g}; "
        f"held-out sequences {len(job.eval_rows)}"
        + (f"; {job.accepted} accepted completions among the training samples" if job.accepted else "")
    )


def optimizer_make(job: Job, settings: LoraSettings) -> None:
    """AdamW on the trainable weights (LoRA and new-token rows, or all of them), with warm-up then the
    set schedule."""
    import torch

    job.trainable = [p for p in job.model.parameters() if p.requires_grad]
    job.optimizer = torch.optim.AdamW(job.trainable, lr=job.learning_rate, weight_decay=settings.weight_decay)
    job.scheduler = torch.optim.lr_scheduler.LambdaLR(job.optimizer, _lr_lambda(settings, job.total))


def _lr_lambda(settings: LoraSettings, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < settings.warmup_steps:
            return (step + 1) / (settings.warmup_steps + 1)
        if settings.schedule == "constant":
            return 1.0
        frac = (step - settings.warmup_steps) / max(1, total - settings.warmup_steps)
        if settings.schedule == "linear":
            return max(0.0, 1.0 - frac)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    return f


# --- one step, batches, held-out loss ------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _epoch_order(seed: int, n_rows: int, epoch: int) -> list[int]:
    idx = list(range(n_rows))
    random.Random(seed * 1000 + epoch).shuffle(idx)
    return idx


def micro_batches(rows: list[list[int]], step: int, settings: LoraSettings, ddp: Ddp) -> Iterator[list]:
    """The `grad_accum` batches of one optimizer step for this process: a reshuffle per epoch, and
    each process takes its own share of every position."""
    per_step = settings.batch_size * settings.grad_accum
    for m in range(settings.grad_accum):
        start = step * per_step + m * settings.batch_size
        batch = []
        for i in range(start, start + settings.batch_size):
            epoch, pos = divmod(i * ddp.world + ddp.rank, len(rows))
            batch.append(rows[_epoch_order(settings.seed, len(rows), epoch)[pos]])
        yield batch


def train_step(job: Job, step: int, settings: LoraSettings, ddp: Ddp, meter: Meter) -> float:
    """Forward and backward over the step's micro-batches, then one clipped optimizer step; the loss."""
    import torch

    step_loss = 0.0
    for batch in micro_batches(job.rows, step, settings, ddp):
        x = torch.tensor(batch, device=job.device)
        with job.autocast:
            loss = job.model(input_ids=x, labels=x).loss / settings.grad_accum
        loss.backward()
        step_loss += float(loss.detach())
        meter.window_tokens += x.numel() * ddp.world
    torch.nn.utils.clip_grad_norm_(job.trainable, 1.0)
    job.optimizer.step()
    job.scheduler.step()
    job.optimizer.zero_grad(set_to_none=True)
    return step_loss


def held_out_loss(job: Job) -> float | None:
    """Mean loss over the held-out sequences, one at a time; None when there are none."""
    import torch

    if not job.eval_rows:
        return None
    job.model.eval()
    losses = []
    with torch.no_grad(), job.autocast:
        for r in job.eval_rows:
            x = torch.tensor([r], device=job.device)
            losses.append(float(job.model(input_ids=x, labels=x).loss))
    job.model.train()
    return sum(losses) / len(losses)


def eval_record(state: TrainState, eval_loss: float | None, step_loss: float) -> bool:
    """Note an evaluation in the state; True when it is the best so far (the adapter to keep)."""
    state.history.append({"step": state.step, "eval_loss": eval_loss, "loss": step_loss})
    if eval_loss is not None and (state.best_eval is None or eval_loss < state.best_eval - 1e-4):
        state.best_eval, state.bad_evals = eval_loss, 0
        return True
    state.bad_evals += 1
    return False


# --- progress ------------------------------------------------------------------------------------


def progress_make(job: Job, state: TrainState, meter: Meter, now: float, eval_loss: float | None) -> Progress:
    """A progress row from the window since the last one (tokens/s) and the run so far (ETA); opens
    the next window."""
    rate = meter.window_tokens / max(1e-9, now - meter.window_start)
    done_rate = state.step / max(1e-9, now - meter.started)
    progress = Progress(
        step=state.step,
        total_steps=job.total,
        loss=meter.recent_loss(),
        tokens_per_s=rate,
        eta_s=(job.total - state.step) / done_rate if done_rate else None,
        peak_memory_mb=_peak_memory_mb(job.device),
        eval_loss=eval_loss,
    )
    meter.last_report, meter.window_tokens, meter.window_start = now, 0, now
    return progress


def _peak_memory_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summary_make(
    job: Job,
    state: TrainState,
    meter: Meter,
    settings: LoraSettings,
    method: TrainingMethod,
    ddp: Ddp,
    stopped_early: bool,
    t0: float,
) -> dict:
    """summary.json: what was trained, how fast, and how the held-out loss went."""
    elapsed = time.monotonic() - meter.started
    tokens_seen = state.step * settings.tokens_per_step * ddp.world
    return {
        "method": method.name,
        "device": method.device,
        "method_reason": method.reason,
        "output": method.output,
        "parameters": sum(p.numel() for p in job.core.parameters()),
        "trainable_parameters": sum(p.numel() for p in job.trainable),
        "fim_format": job.fmt.name,
        "fim_tokens_added": len(job.added),
        "steps": state.step,
        "total_steps": job.total,
        "train_tokens": job.pack_stats["tokens"],
        "padding_fraction": job.pack_stats["padding_fraction"],
        "tokens_seen": tokens_seen,
        "tokens_per_s": round(tokens_seen / max(elapsed, 1e-9), 1),
        "processes": ddp.world,
        "learning_rate": job.learning_rate,
        "first_loss": meter.losses[0] if meter.losses else None,
        "final_loss": meter.recent_loss(),
        "best_eval_loss": state.best_eval,
        "eval_history": state.history,
        "early_stopped": stopped_early,
        **({"accepted_completions": job.accepted} if job.accepted else {}),
        "seconds": round(time.monotonic() - t0, 1),
        "settings": asdict(settings),
    }


# --- checkpoints (resume) and the adapter or model (the best checkpoint) -------------------------


def _meta(job: Job, state: TrainState, ddp: Ddp) -> dict:
    return {**asdict(state), "total_steps": job.total, "processes": ddp.world}


def checkpoint_save(out_dir: Path, job: Job, state: TrainState, ddp: Ddp) -> None:
    """Replace `checkpoint/` (crash-safe): the trainable weights, optimizer and scheduler in
    state.pt, the `TrainState` in meta.json. Rank 0 only: DDP keeps every process's weights equal."""
    import torch

    if not ddp.master:
        return

    def write(folder: Path) -> None:
        torch.save(
            {
                "trainable": _trainable_state(job.core),
                "optimizer": job.optimizer.state_dict(),
                "scheduler": job.scheduler.state_dict(),
            },
            folder / "state.pt",
        )
        (folder / "meta.json").write_text(json.dumps(_meta(job, state, ddp), indent=2))

    paths.atomic_dir_replace(out_dir / "checkpoint", write)


def checkpoint_load(out_dir: Path, job: Job, ddp: Ddp, log: Callable[[str], None]) -> TrainState | None:
    """Restore weights, optimizer and scheduler from `checkpoint/`, and return its `TrainState`;
    None when there is no checkpoint. First puts back any folder a crash left mid-swap."""
    import torch

    if ddp.master:
        for name in ("checkpoint", _output(job)):
            paths.atomic_dir_recover(out_dir / name)
    ddp.barrier()
    ckpt = out_dir / "checkpoint"
    if not (ckpt / "state.pt").exists():
        return None
    saved = torch.load(ckpt / "state.pt", weights_only=False)
    _trainable_load(job.core, saved["trainable"])
    job.optimizer.load_state_dict(saved["optimizer"])
    job.scheduler.load_state_dict(saved["scheduler"])
    # Checkpoints written before meta.json existed carry the state inside state.pt.
    meta = json.loads((ckpt / "meta.json").read_text()) if (ckpt / "meta.json").exists() else saved["state"]
    state = TrainState(**{f.name: meta[f.name] for f in fields(TrainState)})
    log(f"resumed from checkpoint at step {state.step}")
    return state


def _checkpoint_delete(out_dir: Path) -> None:
    for name in ("checkpoint", "checkpoint.partial", "checkpoint.old"):
        shutil.rmtree(out_dir / name, ignore_errors=True)


def adapter_save(out_dir: Path, job: Job, state: TrainState, settings: LoraSettings, ddp: Ddp) -> None:
    """Replace `adapter/` (crash-safe) with the current LoRA weights, or `model/` with the whole
    model (full fine-tuning), and the tokenizer, training settings and meta.json (step and held-out
    loss). Rank 0 only."""
    if not ddp.master:
        return

    def write(folder: Path) -> None:
        job.core.save_pretrained(folder)
        job.tokenizer.save_pretrained(folder)
        settings.save(folder / "training_settings.json")
        (folder / "meta.json").write_text(json.dumps(_meta(job, state, ddp), indent=2))

    paths.atomic_dir_replace(out_dir / _output(job), write)


def _output(job: Job) -> str:
    return job.method.output if job.method is not None else "adapter"


def _trainable_state(model) -> dict:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _trainable_load(model, state: dict) -> None:
    params = dict(model.named_parameters())
    for name, value in state.items():
        params[name].data.copy_(value.to(params[name].device))
