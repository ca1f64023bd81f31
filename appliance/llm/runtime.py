"""Opening a GGUF in llama.cpp the one way Hearth decodes with."""

from __future__ import annotations


def flash_attention() -> bool:
    """Whether Hearth's llama.cpp contexts use flash attention (HEARTH_FLASH_ATTENTION, off unless
    set): one choice for every context, so that evaluation, export checks and serving decode alike."""
    from django.conf import settings

    return settings.configured and settings.HEARTH_FLASH_ATTENTION


def llama_open(path, **options):
    """A `llama_cpp.Llama` on `path` with the attention kernels the engine serves with
    (`flash_attention`), so that evaluation, export checks and serving decode alike."""
    from llama_cpp import Llama

    return Llama(model_path=str(path), flash_attn=flash_attention(), verbose=False, **options)


def llama_amx_built() -> bool:
    """Whether the installed llama.cpp was compiled with its AMX kernels, which crashed (SIGSEGV in
    `ggml_backend_amx_mul_mat`) on the first decode on some Sapphire Rapids class hosts; Hearth's
    build leaves them out (`packaging/llama-wheel.sh`)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    return b"AMX_INT8 = 1" in (info if isinstance(info, bytes) else info.encode())
