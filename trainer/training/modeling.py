"""Load a base for training (NF4 4-bit or full precision), add FIM tokens when it has none, wrap
it with LoRA on every linear projection (or leave every weight trainable for full fine-tuning),
and merge an adapter back for export."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from appliance.errors import TrainingError
from appliance.llm.fim import FimFormat, fim_format_detect
from trainer.tools.tokenizers import fim_tokens_ensure, tokenizer_load
from trainer.training.config import LoraSettings
from trainer.training.methods import TrainingMethod, method_choose

__all__ = ["LORA_TARGETS", "TrainingMethod", "adapter_merge", "base_load_for_training", "method_choose"]

logger = logging.getLogger(__name__)

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def base_load_for_training(hf_path: str, settings: LoraSettings, method: TrainingMethod):
    """(model, tokenizer, fim format, added token ids) ready to train: a peft model for LoRA and
    QLoRA, the plain model with every weight trainable for full fine-tuning."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    tokenizer = tokenizer_load(hf_path)
    fmt, added = fim_tokens_ensure(tokenizer)
    kwargs: dict = {"trust_remote_code": False, "dtype": torch.float32}
    if method.four_bit:
        compute = torch.bfloat16 if method.device == "cuda" else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        if method.device == "cuda":
            # Under torchrun each process loads its quantized copy onto its own GPU: a 4-bit model
            # cannot be moved after loading, so the device is chosen here, never GPU 0 for all.
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    try:
        model = AutoModelForCausalLM.from_pretrained(hf_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"The base model at {hf_path} could not be loaded: {exc}") from exc
    if added:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    if method.four_bit:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=settings.gradient_checkpointing
        )
        _bnb_cpu_training_fix(model)
    elif settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if not method.full:
            model.enable_input_require_grads()
    if method.full:
        model.requires_grad_(True)
        return model, tokenizer, fmt, added
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
        # New FIM tokens get trainable embedding rows; the rest of the vocabulary stays frozen.
        trainable_token_indices={"embed_tokens": added} if added else None,
    )
    model = get_peft_model(model, config)
    return model, tokenizer, fmt, added


def _bnb_cpu_training_fix(model) -> None:
    """bitsandbytes repacks 4-bit weights for an inference-only CPU kernel after a no-grad pass,
    after which gradients are silently dropped; this flag keeps the trainable layout."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return
    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False


def adapter_merge(hf_path: str, adapter_dir: Path, out_dir: Path) -> FimFormat:
    """Reload the base in full precision, apply the adapter, merge, save HF folder + tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer_load(str(adapter_dir))
    fmt = fim_format_detect(tokenizer.get_vocab())
    model = AutoModelForCausalLM.from_pretrained(hf_path, dtype=torch.float32, trust_remote_code=False)
    if model.get_input_embeddings().weight.shape[0] != len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    merged = model.merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if fmt is None:
        raise TrainingError(
            "The merged model's tokenizer has no FIM tokens; the adapter folder is incomplete."
        )
    return fmt
