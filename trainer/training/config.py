"""Training knobs: a typed dataclass with help on every field, validated on creation, saved as JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from appliance.errors import TrainingError
from trainer.training.methods import METHODS

FULL_LR_SMALL = 1e-4  # full fine-tuning under 0.5B parameters (docs/training.md: how it was tuned)
QUANTIZATION_CHOICES = ("auto", "nf4", "none")
SCHEDULES = ("cosine", "linear", "constant")
PRESETS = ("quick", "standard", "thorough")


def _num(value: float) -> str:
    """A limit as an admin reads it: 1,000,000 rather than 1e+06."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def label(name: str) -> str:
    """A setting's name as the admin's form shows it."""
    return name.replace("_", " ").capitalize()


class SettingsInvalid(TrainingError):
    """Training settings out of range: `problems` maps each wrong field to a sentence about it."""

    def __init__(self, problems: dict[str, str]):
        self.problems = problems
        super().__init__("Invalid training settings: " + " ".join(problems.values()))


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


# Inclusive bounds of every numeric setting: beyond them a run is a typo, not a choice (100,000 epochs
# of a repository memorises it and takes years; a rank above 1,024 exceeds the hidden size of any base
# Hearth trains).
LIMITS: dict[str, tuple[float, float]] = {
    "rank": (1, 1024),
    "alpha": (1, 4096),
    "dropout": (0, 0.99),
    "learning_rate": (0, 0.99),
    "warmup_steps": (0, 100_000),
    "weight_decay": (0, 1),
    "seq_len": (32, 32_768),
    "fim_rate": (0, 1),
    "spm_rate": (0, 1),
    "multiline_rate": (0, 1),
    "context_rate": (0, 1),
    "epochs": (0, 50),
    "max_steps": (0, 1_000_000),
    "batch_size": (1, 1024),
    "grad_accum": (1, 4096),
    "eval_every_steps": (0, 1_000_000),
    "eval_sequences": (1, 10_000),
    "early_stopping_patience": (0, 1_000_000),
    "checkpoint_every_s": (0.1, 86_400),
    "seed": (0, 2**31 - 1),
}


@dataclass
class LoraSettings:
    preset: str = _f(
        "standard", "quick, standard or thorough: how many passes over the data.", choices=PRESETS
    )
    method: str = _f(
        "auto",
        "auto (full fine-tuning when the base's weights, gradients and optimizer state fit the device's "
        "memory, else LoRA, else QLoRA), full (every weight), lora or qlora (LoRA on a 4-bit NF4 base).",
        choices=METHODS,
    )
    rank: int = _f(16, "LoRA rank r of every adapted projection.")
    alpha: int = _f(32, "LoRA alpha; the update is scaled by alpha / rank.")
    dropout: float = _f(0.05, "Dropout on the LoRA path.")
    learning_rate: float = _f(
        0.0,
        "Peak learning rate of AdamW; 0 picks one by the method and the base's size (LoRA: 2e-3 "
        "under 0.5B parameters, 1e-3 under 3B, 2e-4 above; full fine-tuning: 1e-4 under 0.5B, 5e-5 under 3B, 2e-5 above).",
    )
    schedule: str = _f(
        "cosine", "Learning-rate schedule after warm-up: cosine, linear or constant.", choices=SCHEDULES
    )
    warmup_steps: int = _f(5, "Optimizer steps of linear warm-up.")
    weight_decay: float = _f(0.0, "AdamW weight decay on adapter weights.")
    seq_len: int = _f(512, "Tokens per packed training sequence.")
    fim_rate: float = _f(0.5, "Fraction of samples turned into fill-in-the-middle samples.")
    spm_rate: float = _f(0.5, "Fraction of FIM samples in suffix-prefix-middle order (the rest PSM).")
    multiline_rate: float = _f(0.5, "Fraction of FIM middles that span several lines (the rest one line).")
    context_rate: float = _f(
        0.3,
        "Fraction of samples that carry snippets of other training files before them (repository "
        "context, written as served prompts write it), so the model learns to use them.",
    )
    epochs: float = _f(0.0, "Passes over the training tokens; 0 lets the preset decide.")
    max_steps: int = _f(0, "Hard cap on optimizer steps; 0 means no cap.")
    batch_size: int = _f(1, "Sequences per forward pass.")
    grad_accum: int = _f(4, "Forward passes per optimizer step.")
    gradient_checkpointing: bool = _f(
        False, "Trade compute for memory (slower; for large bases on small GPUs)."
    )
    quantization: str = _f(
        "auto",
        "auto (the method decides), nf4 (4-bit base: QLoRA, as method qlora) or none (never 4-bit).",
        choices=QUANTIZATION_CHOICES,
    )
    eval_every_steps: int = _f(0, "Held-out loss every N steps; 0 picks about 8 evaluations per run.")
    eval_sequences: int = _f(16, "Held-out sequences used for the held-out loss.")
    early_stopping_patience: int = _f(3, "Stop after this many held-out evaluations without improvement.")
    checkpoint_every_s: float = _f(120.0, "Seconds between resumable checkpoints.")
    seed: int = _f(0, "Seed of sample construction, data order and adapter initialisation.")

    PRESET_EPOCHS = dict(zip(PRESETS, (1.0, 2.0, 4.0), strict=True))

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise SettingsInvalid(problems)

    def problems(self) -> dict[str, str]:
        """Field name → what is wrong with it, in words an admin reads beside the field."""
        out: dict[str, str] = {}
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                out[name] = f"{label(name)} must be a number."
            elif not low <= value <= high:
                out[name] = (
                    f"{label(name)} must be between {_num(low)} and {_num(high)} (it is {_num(value)})."
                )
        for name, choices in (
            ("preset", PRESETS),
            ("schedule", SCHEDULES),
            ("quantization", QUANTIZATION_CHOICES),
        ):
            if getattr(self, name) not in choices:
                out[name] = f"{label(name)} must be one of {', '.join(choices)}."
        if self.method not in METHODS:
            out["method"] = f"Method must be one of {', '.join(METHODS)}."
        elif self.quantization == "nf4" and self.method in ("full", "lora"):
            out["quantization"] = (
                f"Quantization nf4 trains LoRA on a 4-bit base (method qlora); it cannot go with method "
                f"{self.method}."
            )
        elif self.quantization == "none" and self.method == "qlora":
            out["quantization"] = "Quantization none rules out method qlora, which trains on a 4-bit base."
        return out

    @classmethod
    def from_dict(cls, data: dict) -> LoraSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise TrainingError(f"Unknown training settings: {', '.join(sorted(unknown))}.")
        return cls(**data)

    def as_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2))

    def learning_rate_for(self, n_params: int, method: str = "lora") -> float:
        """The set learning rate, or by method and model size. Full fine-tuning moves every weight and
        wants a rate 10-20× lower than LoRA's; small bases take (and need) larger steps to learn a
        repository in a short run; billion-parameter bases keep the usual QLoRA rate."""
        if self.learning_rate:
            return self.learning_rate
        if method == "full":
            return FULL_LR_SMALL if n_params < 500_000_000 else 5e-5 if n_params < 3_000_000_000 else 2e-5
        if n_params < 500_000_000:
            return 2e-3
        return 1e-3 if n_params < 3_000_000_000 else 2e-4

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.batch_size * self.grad_accum

    def steps_for(self, train_tokens: int, processes: int = 1) -> int:
        """Optimizer steps for this dataset: the preset's epochs (or `epochs`) shared by `processes`
        data-parallel processes, capped by max_steps."""
        epochs = self.epochs or self.PRESET_EPOCHS[self.preset]
        steps = max(1, math.ceil(epochs * train_tokens / (self.tokens_per_step * processes)))
        return min(steps, self.max_steps) if self.max_steps else steps
