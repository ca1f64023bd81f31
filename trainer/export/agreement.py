"""How closely a GGUF file follows the merged PyTorch model: top-1 agreement on held-out tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.cpusets import llama_threads, usable_cpu_count


def reference_top1(hf_dir: Path, texts: list[str], *, max_tokens: int = 512) -> tuple[list[int], np.ndarray]:
    """Token ids of the held-out text (the merged model's tokenizer) and the merged model's argmax."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(usable_cpu_count())  # the worker's cores, not the machine's
    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])
        if len(ids) >= max_tokens:
            break
    ids = ids[:max_tokens]
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return ids, logits.argmax(-1).numpy()


def gguf_top1_agreement(gguf: Path, ids: list[int], reference: np.ndarray) -> float:
    from appliance.llm.runtime import llama_open

    llm = llama_open(gguf, n_ctx=max(64, len(ids) + 8), logits_all=True, **llama_threads())
    llm.eval(ids)
    ours = np.asarray(llm.scores[: len(ids)]).argmax(-1)
    del llm
    return float((ours == reference).mean())
