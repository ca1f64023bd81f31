"""`make bench-training`: Hearth's trainer with each training method side by side (full fine-tuning,
LoRA, and QLoRA where CUDA is present or `--methods` asks for it: bitsandbytes' CPU backend is slow),
and its LoRA against a plain Hugging Face Trainer + peft baseline, same base, same data, same machine,
in one run. Prints JSON lines {metric, value, goal}."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import code_files, django_setup, emit


def baseline_tokens_per_s(
    hf_path: str, files: list[dict], seq_len: int, steps: int, batch: int
) -> tuple[float, float]:
    """Trainer + peft LoRA (same rank/targets), default precision, windows padded per batch."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from trainer.training.modeling import LORA_TARGETS

    tok = AutoTokenizer.from_pretrained(hf_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(hf_path, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
        ),
    )
    examples = []
    for f in files:
        ids = tok(f["text"], add_special_tokens=False)["input_ids"]
        examples.extend({"input_ids": ids[i : i + seq_len]} for i in range(0, len(ids), seq_len))
    n = steps * batch
    examples = (examples * (n // max(1, len(examples)) + 1))[:n]
    real = sum(len(e["input_ids"]) for e in examples)
    padded = sum(
        max(len(e["input_ids"]) for e in examples[i : i + batch]) * len(examples[i : i + batch])
        for i in range(0, n, batch)
    )

    class Timer(TrainerCallback):
        start = None

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 1 and self.start is None:  # skip the first (warm-up) step
                self.start = time.perf_counter()

    timer = Timer()
    args = TrainingArguments(
        output_dir=str(Path(hf_path).parent / "hf-baseline"),
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=5e-4,
        logging_steps=10**6,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=examples,
        data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
        callbacks=[timer],
    )
    trainer.train()
    elapsed = time.perf_counter() - timer.start
    return real * (steps - 1) / steps / elapsed, 1 - real / padded


def hearth_tokens_per_s(
    hf_path: str, files: list[dict], seq_len: int, steps: int, batch: int, out: Path, method: str = "lora"
):
    """Tokens/s of Hearth's loop with `method` (full, lora or qlora), and its padding fraction."""
    import shutil

    from trainer.training.config import LoraSettings
    from trainer.training.loop import train
    from trainer.training.modeling import method_choose

    shutil.rmtree(out, ignore_errors=True)
    settings = LoraSettings(
        method=method,
        max_steps=steps,
        seq_len=seq_len,
        batch_size=batch,
        grad_accum=1,
        eval_sequences=1,
        eval_every_steps=10**6,
        warmup_steps=1,
        early_stopping_patience=10**6,
    )
    times = []
    summary = train(
        hf_path=hf_path,
        train_files=files,
        heldout_files=files[:1],
        settings=settings,
        method=method_choose(settings.method),
        out_dir=out,
        log=lambda m: None,
        on_progress=lambda p: times.append((time.perf_counter(), p.step)),
        progress_every_s=0,
    )
    # Same accounting as the baseline: steps after the first, real tokens per second of stepping.
    (t1, s1), (t2, s2) = times[0], times[-1]
    return settings.tokens_per_step * (s2 - s1) / (t2 - t1), summary["padding_fraction"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", choices=["smollm2", "micro"], default="smollm2")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument(
        "--methods", default="", help="Comma-separated methods; default full,lora (and qlora with CUDA)."
    )
    args = parser.parse_args()
    home = django_setup()
    if args.base == "micro":
        from trainer.basemodels.services import basemodel_bootstrap

        hf_path = basemodel_bootstrap(log=lambda m: None).hf_path
    else:
        from trainer.basemodels.services import basemodel_fetch_default

        hf_path = basemodel_fetch_default(log=lambda m: None).hf_path
    files = code_files(400_000)
    rates = {}
    for method in _methods(args.methods):
        rates[method], pad = hearth_tokens_per_s(
            hf_path, files, args.seq_len, args.steps, args.batch, home / f"bench-run-{method}", method
        )
        emit(f"hearth_{method}_tokens_per_s", round(rates[method], 1), "higher is better", base=args.base)
        hearth_pad = pad  # the same samples and packing for every method
    if "full" in rates and "lora" in rates:
        emit("full_vs_lora_speed", round(rates["full"] / rates["lora"], 3), "reference", base=args.base)
    hearth = rates.get("lora") or next(iter(rates.values()))
    base, base_pad = baseline_tokens_per_s(hf_path, files, args.seq_len, args.steps, args.batch)
    emit("hearth_train_tokens_per_s", round(hearth, 1), "higher is better", base=args.base)
    emit("hf_trainer_tokens_per_s", round(base, 1), "reference", base=args.base)
    emit("trainer_vs_hf_baseline", round(hearth / base, 3), ">= 1.3", base=args.base)
    emit("padding_fraction", round(hearth_pad, 4), "<= 0.02", baseline_padding_fraction=round(base_pad, 4))


def _methods(asked: str) -> list[str]:
    if asked:
        return [m.strip() for m in asked.split(",") if m.strip()]
    import torch

    return ["full", "lora"] + (["qlora"] if torch.cuda.is_available() else [])


if __name__ == "__main__":
    main()
