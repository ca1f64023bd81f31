"""Which training method a run uses, and why, in numbers: full fine-tuning when the base's weights,
gradients and AdamW state fit the device with a margin; else LoRA on the full-precision base; else
QLoRA (the base in 4-bit NF4). LoRA learns markedly less than full fine-tuning on code (Biderman et
al. 2024, "LoRA Learns Less and Forgets Less"), so full fine-tuning is preferred wherever it fits."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

# fp32 weights (4) + gradients (4) + AdamW's two moments (8); mixed precision keeps fp32 master weights.
FULL_BYTES_PER_PARAM = 16
LORA_BYTES_PER_PARAM = 4  # the frozen fp32 base; the adapter and its optimizer state are a rounding
QLORA_BYTES_PER_PARAM = 0.6  # NF4 with double quantization, plus the higher-precision embeddings
FIT_SHARE = 0.8  # use at most this share of what the device has free: fragmentation, the CUDA context
METHODS = ("auto", "full", "lora", "qlora")
LEGACY = {"none": "lora", "nf4": "qlora"}  # the old `quantization` words, accepted where a method is


@dataclass
class TrainingMethod:
    name: str  # full-bf16 | full-fp32 | lora-bf16 | lora-fp32 | qlora-nf4
    device: str
    reason: str

    @property
    def kind(self) -> str:
        """full, lora or qlora."""
        return self.name.split("-")[0]

    @property
    def full(self) -> bool:
        return self.kind == "full"

    @property
    def four_bit(self) -> bool:
        return self.name == "qlora-nf4"

    @property
    def autocast_bf16(self) -> bool:
        return self.name.endswith("-bf16")

    @property
    def output(self) -> str:
        """The run's folder holding what it trained: a whole HF model, or a LoRA adapter."""
        return "model" if self.full else "adapter"


def method_named(name: str, device: str, reason: str = "") -> TrainingMethod:
    """The method a run already recorded (a resumed attempt trains on as it began)."""
    return TrainingMethod(name, device, reason or f"{name} on {device}, as the run's first attempt chose")


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def _params(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def base_parameter_count(hf_path: str | Path) -> int:
    """Parameters of a HF folder's weights, from the safetensors headers (no torch, no loading);
    a pytorch_model.bin is counted at 4 bytes a parameter."""
    folder = Path(hf_path)
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        for name, info in header.items():
            if name != "__metadata__":
                n = 1
                for d in info["shape"]:
                    n *= d
                total += n
    if not total:
        total = sum(p.stat().st_size for p in folder.glob("pytorch_model*.bin")) // 4
    return total


def activation_bytes(hf_path: str | Path, batch_size: int, seq_len: int) -> int:
    """A generous guess at activation memory for one micro-batch: the logits and their gradient in
    fp32, plus ~40 fp32 values per hidden unit per layer per token kept for the backward pass."""
    try:
        config = json.loads((Path(hf_path) / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    hidden = int(config.get("hidden_size", 4096))
    layers = int(config.get("num_hidden_layers", 32))
    vocab = int(config.get("vocab_size", 32_000))
    tokens = batch_size * seq_len
    return tokens * (3 * vocab * 4 + layers * hidden * 40 * 4)


def cpu_available_bytes() -> int:
    """RAM this process may still use: MemAvailable, capped by the cgroup's limit less its usage."""
    try:
        import psutil

        available = int(psutil.virtual_memory().available)
    except ImportError:
        available = _meminfo_available()
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            available = min(available, int(limit) - usage)
        break
    return max(0, available)


def _meminfo_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def cuda_available_bytes() -> int:
    """Free memory of this process's GPU (torchrun's LOCAL_RANK under several processes)."""
    import torch

    free, _total = torch.cuda.mem_get_info(int(os.environ.get("LOCAL_RANK", "0")))
    return int(free)


def _cuda() -> tuple[bool, bool]:
    """(CUDA present, its GPU computes in bf16)."""
    import torch

    if not torch.cuda.is_available():
        return False, False
    return True, bool(torch.cuda.is_bf16_supported())


def _cpu_bf16() -> bool:
    import torch

    return bool(torch.backends.mkldnn.is_available())


def method_choose(
    requested: str = "auto",
    *,
    quantization: str = "auto",
    hf_path: str | Path | None = None,
    n_params: int | None = None,
    available_bytes: int | None = None,
    activations: int = 0,
    cuda: bool | None = None,
) -> TrainingMethod:
    """The method for `requested` (auto, full, lora, qlora; the legacy words none and nf4 mean lora
    and qlora). `auto` measures: the base's parameters (`n_params`, or counted in `hf_path`) against
    the device's free memory (`available_bytes`, or measured), and says why in numbers."""
    requested = LEGACY.get(requested, requested)
    if requested == "auto" and quantization == "nf4":
        requested = "qlora"
    if cuda is None:
        cuda, gpu_bf16 = _cuda()
    else:
        gpu_bf16 = cuda
    device = "cuda" if cuda else "cpu"
    bf16 = gpu_bf16 if cuda else _cpu_bf16()
    if requested == "qlora":
        why = "QLoRA requested: base in 4-bit NF4, double quantization"
        return TrainingMethod("qlora-nf4", device, why + (", bf16 compute" if cuda else " (CPU backend)"))
    if requested in ("full", "lora"):
        return _named(requested, device, bf16, f"{requested} requested in the settings")
    if n_params is None:
        n_params = base_parameter_count(hf_path) if hf_path else 0
    if available_bytes is None:
        available_bytes = cuda_available_bytes() if cuda else cpu_available_bytes()
    return _auto(n_params, available_bytes, activations, device, bf16, allow_4bit=quantization != "none")


def _named(kind: str, device: str, bf16: bool, why: str) -> TrainingMethod:
    if kind == "full":
        # Full fine-tuning keeps fp32 master weights: bf16 autocast on a GPU that has it, fp32 on CPU
        # (CPU bf16 autocast of every weight's update loses the small steps a low learning rate takes).
        precision = "bf16" if device == "cuda" and bf16 else "fp32"
        return TrainingMethod(f"full-{precision}", device, why + f"; every weight trained ({precision})")
    return TrainingMethod(
        f"lora-{'bf16' if bf16 else 'fp32'}", device, why + "; LoRA on the full-precision base"
    )


def _auto(
    n_params: int, available: int, activations: int, device: str, bf16: bool, *, allow_4bit: bool
) -> TrainingMethod:
    where = "GPU memory free" if device == "cuda" else "RAM available"
    usable = available * FIT_SHARE
    full = n_params * FULL_BYTES_PER_PARAM + activations
    lora = n_params * LORA_BYTES_PER_PARAM + activations
    have = f"{_gb(available)} {where} (using at most {FIT_SHARE:.0%})"
    if full <= usable:
        why = f"{_params(n_params)} parameters need ≈{_gb(full)} for full fine-tuning; {have}"
        return _named("full", device, bf16, why)
    if lora <= usable or not allow_4bit:
        why = (
            f"{_params(n_params)} parameters need ≈{_gb(full)} for full fine-tuning but only {have}; "
            f"LoRA needs ≈{_gb(lora)}"
        )
        return _named("lora", device, bf16, why)
    qlora = n_params * QLORA_BYTES_PER_PARAM + activations
    why = (
        f"{_params(n_params)} parameters need ≈{_gb(full)} for full fine-tuning and ≈{_gb(lora)} for "
        f"LoRA but only {have}; QLoRA (4-bit NF4) needs ≈{_gb(qlora)}"
    )
    return TrainingMethod("qlora-nf4", device, why)
