"""The training loop: packed FIM sequences, LoRA, held-out loss, best checkpoint, resumable.

Pure stage code: paths and callbacks in, a summary dict out. The caller owns the database.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from appliance.errors import TrainingError
from trainer.training.config import LoraSettings
from trainer.training.modeling import TrainingMethod, base_load_for_training
from trainer.training.samples import PieceEncoder, pack, samples_build

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN_GUESS = 3.0


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


def _peak_memory_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def sequences_prepare(files: list[dict], tokenizer, fmt, eot_id: int, settings: LoraSettings, seed: int):
    samples = samples_build(
        files, fmt, fim_rate=settings.fim_rate, spm_rate=settings.spm_rate,
        multiline_rate=settings.multiline_rate, window_chars=int(settings.seq_len * CHARS_PER_TOKEN_GUESS),
        seed=seed,
    )
    return pack(PieceEncoder(tokenizer, eot_id).encode_many(samples), settings.seq_len)


def train(
    *,
    hf_path: str,
    train_files: list[dict],
    heldout_files: list[dict],
    settings: LoraSettings,
    method: TrainingMethod,
    out_dir: Path,
    on_progress: Callable[[Progress], None] = lambda p: None,
    should_stop: Callable[[], bool] = lambda: False,
    log: Callable[[str], None] = logger.info,
    progress_every_s: float = 3.0,
) -> dict:
    """Fine-tune and write `out_dir/adapter` (the best held-out checkpoint). Resumes from
    `out_dir/checkpoint` when one exists."""
    import torch

    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    rank, world = _distributed_init(method.device)
    if rank:
        log = on_progress = lambda *a, **k: None
    model, tokenizer, fmt, added = base_load_for_training(hf_path, settings, method)
    if method.device == "cuda" and not method.four_bit:
        model.to(f"cuda:{rank % max(1, torch.cuda.device_count())}" if world > 1 else "cuda")
    core = model  # the peft model; `model` becomes its DDP wrapper when training on several processes
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model)
    eot_id = tokenizer.convert_tokens_to_ids(fmt.eot)
    log(f"loaded base ({method.name} on {method.device}) in {time.monotonic() - t0:.1f} s; "
        f"FIM format {fmt.name}{' (tokens added: ' + str(len(added)) + ')' if added else ''}")

    rows, pack_stats = sequences_prepare(train_files, tokenizer, fmt, eot_id, settings, settings.seed)
    eval_rows, _ = sequences_prepare(heldout_files, tokenizer, fmt, eot_id, settings, settings.seed + 1)
    eval_rows = eval_rows[: settings.eval_sequences]
    if not rows:
        raise TrainingError("The dataset produced no training tokens.")
    total = settings.steps_for(pack_stats["tokens"], processes=world)
    eval_every = settings.eval_every_steps or max(1, total // 8)
    learning_rate = settings.learning_rate_for(sum(p.numel() for p in core.parameters() if not p.requires_grad))
    log(f"{pack_stats['tokens']} training tokens in {len(rows)} packed sequences of {settings.seq_len} "
        f"(padding {pack_stats['padding_fraction']:.3f}); {total} steps"
        f"{f' on {world} processes' if world > 1 else ''} at learning rate {learning_rate:g}; "
        f"held-out sequences {len(eval_rows)}")

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(settings, total))
    device = method.device
    autocast = (
        torch.autocast(device_type=device, dtype=torch.bfloat16)
        if method.autocast_bf16 or (device == "cuda")
        else torch.autocast(device_type=device, enabled=False)
    )

    state = {"step": 0, "best_eval": None, "bad_evals": 0, "history": []}
    ckpt = out_dir / "checkpoint"
    if (ckpt / "state.pt").exists():
        saved = torch.load(ckpt / "state.pt", weights_only=False)
        _trainable_load(core, saved["trainable"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        log(f"resumed from checkpoint at step {state['step']}")

    @functools.lru_cache(maxsize=4)
    def order(epoch: int) -> list[int]:
        idx = list(range(len(rows)))
        random.Random(settings.seed * 1000 + epoch).shuffle(idx)
        return idx

    def micro_batches(step: int):
        per_step = settings.batch_size * settings.grad_accum
        for m in range(settings.grad_accum):
            start = step * per_step + m * settings.batch_size
            batch = []
            for i in range(start, start + settings.batch_size):
                epoch, pos = divmod(i * world + rank, len(rows))  # each process takes its own share
                batch.append(rows[order(epoch)[pos]])
            yield torch.tensor(batch, device=device)

    def held_out_loss() -> float | None:
        if not eval_rows:
            return None
        model.eval()
        losses = []
        with torch.no_grad(), autocast:
            for r in eval_rows:
                x = torch.tensor([r], device=device)
                losses.append(float(model(input_ids=x, labels=x).loss))
        model.train()
        return sum(losses) / len(losses)

    def save_checkpoint() -> None:
        if rank:
            return
        tmp = out_dir / "checkpoint.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        torch.save(
            {"trainable": _trainable_state(core), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "state": state},
            tmp / "state.pt",
        )
        shutil.rmtree(ckpt, ignore_errors=True)
        tmp.rename(ckpt)

    def save_best() -> None:
        if rank:
            return
        best = out_dir / "adapter"
        tmp = out_dir / "adapter.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        core.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        settings.save(tmp / "training_settings.json")
        shutil.rmtree(best, ignore_errors=True)
        tmp.rename(best)

    model.train()
    last_report = last_ckpt = time.monotonic()
    window_tokens, window_start = 0, time.monotonic()
    losses: list[float] = []
    train_started = time.monotonic()
    stopped_early = False
    while state["step"] < total:
        step = state["step"]
        step_loss = 0.0
        for x in micro_batches(step):
            with autocast:
                loss = model(input_ids=x, labels=x).loss / settings.grad_accum
            loss.backward()
            step_loss += float(loss.detach())
            window_tokens += x.numel() * world
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        losses.append(step_loss)
        now = time.monotonic()

        eval_loss = None
        if state["step"] % eval_every == 0 or state["step"] == total:
            eval_loss = held_out_loss()
            state["history"].append({"step": state["step"], "eval_loss": eval_loss, "loss": step_loss})
            if eval_loss is not None and (state["best_eval"] is None or eval_loss < state["best_eval"] - 1e-4):
                state["best_eval"], state["bad_evals"] = eval_loss, 0
                save_best()
            else:
                state["bad_evals"] += 1
            if state["bad_evals"] >= settings.early_stopping_patience:
                log(f"early stop at step {state['step']}: held-out loss has not improved "
                    f"for {state['bad_evals']} evaluations (best {state['best_eval']:.4f})")
                stopped_early = True

        if now - last_report >= progress_every_s or eval_loss is not None or state["step"] == total:
            rate = window_tokens / max(1e-9, now - window_start)
            done_rate = (state["step"]) / max(1e-9, now - train_started)
            on_progress(Progress(
                step=state["step"], total_steps=total, loss=sum(losses[-8:]) / len(losses[-8:]),
                tokens_per_s=rate, eta_s=(total - state["step"]) / done_rate if done_rate else None,
                peak_memory_mb=_peak_memory_mb(device), eval_loss=eval_loss,
            ))
            last_report, window_tokens, window_start = now, 0, now
        if now - last_ckpt >= settings.checkpoint_every_s and state["step"] < total:
            save_checkpoint()
            last_ckpt = now
        if stopped_early:
            break
        if should_stop():
            save_checkpoint()
            raise TrainingCancelled("The run was cancelled.")

    if not (out_dir / "adapter").exists():
        save_best()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    if rank == 0:
        shutil.rmtree(ckpt, ignore_errors=True)
    elapsed = time.monotonic() - train_started
    summary = {
        "method": method.name,
        "device": method.device,
        "fim_format": fmt.name,
        "fim_tokens_added": len(added),
        "steps": state["step"],
        "total_steps": total,
        "train_tokens": pack_stats["tokens"],
        "padding_fraction": pack_stats["padding_fraction"],
        "tokens_seen": state["step"] * settings.tokens_per_step * world,
        "tokens_per_s": round(state["step"] * settings.tokens_per_step * world / max(elapsed, 1e-9), 1),
        "processes": world,
        "learning_rate": learning_rate,
        "first_loss": losses[0] if losses else None,
        "final_loss": sum(losses[-8:]) / len(losses[-8:]) if losses else None,
        "best_eval_loss": state["best_eval"],
        "eval_history": state["history"],
        "early_stopped": stopped_early,
        "seconds": round(time.monotonic() - t0, 1),
        "settings": asdict(settings),
    }
    if rank == 0:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _distributed_init(device: str) -> tuple[int, int]:
    """(rank, world size): several processes when launched by torchrun/accelerate (WORLD_SIZE > 1),
    with gloo on CPU and NCCL on CUDA; one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _trainable_state(model) -> dict:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _trainable_load(model, state: dict) -> None:
    params = dict(model.named_parameters())
    for name, value in state.items():
        params[name].data.copy_(value.to(params[name].device))
