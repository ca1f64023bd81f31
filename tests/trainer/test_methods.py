"""Training methods: auto picks full fine-tuning when it fits the memory and LoRA or QLoRA when not;
a full fine-tune of the micro model learns, resumes, keeps a whole model and exports without a merge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from appliance.errors import TrainingError
from trainer.training.config import LoraSettings
from trainer.training.methods import method_choose

GB = 10**9


def test_auto_picks_full_when_it_fits_and_says_why_in_numbers():
    method = method_choose("auto", n_params=135_000_000, available_bytes=17 * GB, cuda=False)
    assert method.full and method.name == "full-fp32" and method.output == "model"
    assert "135M parameters need ≈2.2 GB for full fine-tuning; 17.0 GB RAM available" in method.reason
    gpu = method_choose("auto", n_params=135_000_000, available_bytes=17 * GB, cuda=True)
    assert gpu.name == "full-bf16" and gpu.device == "cuda" and "GPU memory free" in gpu.reason


def test_auto_falls_back_to_lora_then_qlora():
    lora = method_choose("auto", n_params=1_500_000_000, available_bytes=16 * GB, cuda=True)
    assert lora.kind == "lora" and not lora.four_bit and lora.output == "adapter"
    assert "1.5B parameters need ≈24.0 GB for full fine-tuning but only 16.0 GB" in lora.reason
    qlora = method_choose("auto", n_params=7 * 10**9, available_bytes=16 * GB, cuda=True)
    assert qlora.four_bit and "QLoRA" in qlora.reason
    # Activations count too: the same base fits without them and not with them.
    assert method_choose("auto", n_params=10**8, available_bytes=2 * GB, cuda=False).full
    assert not method_choose("auto", n_params=10**8, available_bytes=2 * GB, activations=GB, cuda=False).full
    # quantization=none never goes 4-bit; nf4 (the old setting) still forces QLoRA.
    assert method_choose("auto", quantization="none", n_params=7 * 10**9, available_bytes=GB).kind == "lora"
    assert method_choose("auto", quantization="nf4", n_params=1, available_bytes=GB).four_bit
    assert method_choose("full", n_params=7 * 10**9, available_bytes=1, cuda=False).full


def test_the_measured_memory_is_real():
    from trainer.training.methods import base_parameter_count, cpu_available_bytes

    assert cpu_available_bytes() > 10**7
    assert base_parameter_count(Path("/nonexistent")) == 0


def test_old_settings_json_without_method_still_loads():
    old = {k: v for k, v in LoraSettings().as_dict().items() if k != "method"}
    old["quantization"] = "nf4"
    settings = LoraSettings.from_dict(old)
    assert settings.method == "auto" and settings.quantization == "nf4"
    assert method_choose(settings.method, quantization=settings.quantization).four_bit
    with pytest.raises(TrainingError, match="Quantization nf4 trains LoRA on a 4-bit base"):
        LoraSettings(method="full", quantization="nf4")
    with pytest.raises(TrainingError, match="Method must be one of auto, full, lora, qlora"):
        LoraSettings(method="bogus")


def test_full_learning_rate_is_lower_than_loras():
    s = LoraSettings()
    for n in (135_000_000, 1_500_000_000, 7 * 10**9):
        assert s.learning_rate_for(n, "full") < s.learning_rate_for(n, "lora") / 5


def _files():
    from tests.conftest import CODE_FILES, stdlib_files

    return [{"path": p, "text": t} for p, t in stdlib_files(CODE_FILES[:6]).items()]


@pytest.fixture(scope="module")
def full_run(micro_dir, tmp_path_factory) -> tuple[Path, dict]:
    """A short full fine-tune of the micro model at the default full-FT learning rate."""
    from trainer.training.loop import train

    files = _files()
    settings = LoraSettings(
        method="full",
        max_steps=24,
        seq_len=128,
        grad_accum=1,
        batch_size=4,
        warmup_steps=2,
        eval_every_steps=6,
        eval_sequences=6,
        early_stopping_patience=10,
    )
    out = tmp_path_factory.mktemp("full") / "run"
    summary = train(
        hf_path=str(micro_dir),
        train_files=files,
        heldout_files=files[:2],
        settings=settings,
        method=method_choose(settings.method, cuda=False),
        out_dir=out,
        log=lambda m: None,
    )
    return out, summary


def test_full_fine_tune_learns_and_keeps_a_whole_model(full_run):
    out, summary = full_run
    history = [h["eval_loss"] for h in summary["eval_history"]]
    assert history[-1] < history[0] - 0.05, history
    assert summary["method"] == "full-fp32" and summary["output"] == "model"
    assert summary["trainable_parameters"] == summary["parameters"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["model", "summary.json"]
    model = out / "model"
    assert (model / "config.json").exists() and (model / "model.safetensors").exists()
    assert (model / "tokenizer_config.json").exists() and not (model / "adapter_config.json").exists()


def test_full_fine_tune_exports_to_gguf_without_a_merge(full_run, tmp_path):
    import llama_cpp

    from trainer.export.services import _model_folder
    from trainer.tools.gguf import gguf_convert, gguf_verify

    out, _ = full_run
    run = SimpleNamespace(method="full-fp32", adapter_path=str(out / "model"), base=None)
    timings: dict = {}
    folder, fmt = _model_folder(run, tmp_path, timings, log=lambda m: None)
    assert folder == out / "model" and "merge_s" not in timings and not (tmp_path / "merged").exists()
    assert fmt.name == "hearth"
    gguf = gguf_convert(folder, tmp_path / "model-f16.gguf", outtype="f16", log=lambda m: None)
    assert gguf_verify(gguf, probe_text="def add(a, b):\n    return a + b\n")
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=128, verbose=False)
    assert llm.create_completion("def main(", max_tokens=4, temperature=0)["choices"][0]["text"] is not None


def test_full_fine_tune_resumes_from_its_checkpoint_and_adds_fim_tokens(micro_dir, tmp_path):
    """A base without FIM tokens gets them (new embedding rows, trained with the rest); a cancelled
    full fine-tune leaves every weight in its checkpoint and the next call resumes from it."""
    from trainer.tools.tokenizers import tokenizer_load
    from trainer.training.loop import TrainingCancelled, train

    plain = tmp_path / "plain"
    shutil.copytree(micro_dir, plain)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (plain / name).write_text((plain / name).read_text().replace("hearth_fim_", "other_"))
    settings = LoraSettings(
        method="full", max_steps=4, seq_len=64, grad_accum=1, eval_every_steps=2, eval_sequences=2
    )
    run, asked = tmp_path / "run", []
    kwargs = {
        "hf_path": str(plain),
        "train_files": _files()[:3],
        "heldout_files": _files()[:1],
        "settings": settings,
        "method": method_choose("full", cuda=False),
        "out_dir": run,
        "progress_every_s": 0.0,
    }
    with pytest.raises(TrainingCancelled):
        train(**kwargs, should_stop=lambda: asked.append(1) or len(asked) >= 3, log=lambda m: None)
    import torch

    saved = torch.load(run / "checkpoint" / "state.pt", weights_only=False)
    assert any("embed_tokens" in n for n in saved["trainable"]) and len(saved["trainable"]) > 10
    lines: list[str] = []
    summary = train(**kwargs, log=lines.append)
    assert "resumed from checkpoint at step 3" in lines and summary["steps"] == 4
    assert summary["fim_tokens_added"] >= 3 and summary["fim_format"] == "starcoder"
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["vocab_size"] == len(tokenizer_load(str(run / "model")))
