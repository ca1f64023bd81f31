"""Opening a GGUF in llama.cpp the one way Hearth decodes with."""

from __future__ import annotations


def llama_open(path, **options):
    """A `llama_cpp.Llama` on `path` with the attention kernels the engine serves with (flash
    attention), so that evaluation, export checks and serving decode alike."""
    from llama_cpp import Llama

    return Llama(model_path=str(path), flash_attn=True, verbose=False, **options)
