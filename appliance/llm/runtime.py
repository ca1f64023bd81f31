"""Opening a GGUF in llama.cpp the one way Hearth decodes with."""

from __future__ import annotations


def llama_open(path, **options):
    """A `llama_cpp.Llama` on `path` with the attention kernels the engine serves with (flash
    attention), so that evaluation, export checks and serving decode alike."""
    from llama_cpp import Llama

    return Llama(model_path=str(path), flash_attn=True, verbose=False, **options)


def llama_amx_built() -> bool:
    """Whether the installed llama.cpp was compiled with its AMX kernels, which crashed (SIGSEGV in
    `ggml_backend_amx_mul_mat`) on the first decode on some Sapphire Rapids class hosts; Hearth's
    build leaves them out (`packaging/llama-wheel.sh`)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    return b"AMX_INT8 = 1" in (info if isinstance(info, bytes) else info.encode())
