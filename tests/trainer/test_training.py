"""Training pieces: settings validation, FIM samples, packing, and real LoRA / QLoRA steps on CPU."""

from __future__ import annotations

import itertools
import random

import pytest

from appliance.errors import TrainingError
from appliance.llm.fim import HEARTH, STARCODER, fim_format_detect
from trainer.training.config import LoraSettings
from trainer.training.samples import fim_pieces, pack

CODE = "import os\n\n\ndef main(argv):\n    path = os.path.join(argv[0], 'x')\n    return path\n"


def test_settings_validate_with_readable_message():
    with pytest.raises(TrainingError, match="Rank must be between 1 and 1,024"):
        LoraSettings(rank=0)
    with pytest.raises(TrainingError, match="Unknown training settings: bogus"):
        LoraSettings.from_dict({"bogus": 1})
    assert LoraSettings(preset="quick").steps_for(10_000) < LoraSettings(preset="thorough").steps_for(10_000)
    assert LoraSettings(max_steps=3).steps_for(10**9) == 3
    with pytest.raises(TrainingError, match="Learning rate must be between"):
        LoraSettings(learning_rate=-1e-3)


def test_learning_rate_follows_model_size_unless_set():
    auto = LoraSettings()
    assert (
        auto.learning_rate_for(135_000_000)
        > auto.learning_rate_for(1_500_000_000)
        > auto.learning_rate_for(7 * 10**9)
    )
    assert LoraSettings(learning_rate=1e-4).learning_rate_for(135_000_000) == 1e-4


def test_fim_pieces_cover_whole_lines_in_both_orders():
    rng = random.Random(0)
    for spm in (False, True):
        pieces = fim_pieces(CODE, HEARTH, rng, spm=spm, multiline=False)
        specials = [p.text for p in pieces if p.special]
        assert specials == [HEARTH.prefix, HEARTH.suffix, HEARTH.middle]
        texts = [p.text for p in pieces if not p.special]
        middle = texts[-1]
        assert "\n" not in middle and middle.strip()
        rebuilt = texts[1] + middle + texts[0] if spm else texts[0] + middle + texts[1]
        assert rebuilt == CODE


def test_pack_has_no_padding():
    rows, stats = pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], seq_len=4)
    assert rows == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert stats["padding_fraction"] == 0.0 and stats["dropped_tail_tokens"] == 1


def test_fim_format_detection():
    assert fim_format_detect(["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "x"]) is STARCODER
    assert fim_format_detect(["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]).name == "qwen2.5-coder"
    assert fim_format_detect(["a", "b"]) is None


def _files():
    from tests.conftest import CODE_FILES, stdlib_files

    files = stdlib_files(CODE_FILES[:6])
    return [{"path": p, "text": t} for p, t in files.items()]


@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_training_lowers_loss_on_cpu(micro_dir, tmp_path, quantization):
    """LoRA and NF4 QLoRA both learn on CPU: the held-out loss falls (the 4-bit gradient trap is avoided).

    The micro model is randomly initialised with a frozen random output layer, which bounds how far
    LoRA alone can move its loss; a model whose gradients were dropped would not move at all."""
    from trainer.training.loop import train
    from trainer.training.modeling import method_choose

    files = _files()
    settings = LoraSettings(
        max_steps=30,
        seq_len=128,
        grad_accum=1,
        batch_size=4,
        learning_rate=2e-2,
        rank=32,
        warmup_steps=1,
        eval_every_steps=10,
        eval_sequences=6,
        quantization=quantization,
    )
    method = method_choose(settings.quantization)
    assert method.four_bit == (quantization == "nf4")
    summary = train(
        hf_path=str(micro_dir),
        train_files=files,
        heldout_files=files[:2],
        settings=settings,
        method=method,
        out_dir=tmp_path / "run",
        log=lambda m: None,
    )
    history = [h["eval_loss"] for h in summary["eval_history"]]
    # Falls overall, and never climbs by more than a rounding-level step on the way (a plateau).
    assert history[-1] < history[0] - 0.01, history
    assert all(later < earlier + 0.005 for earlier, later in itertools.pairwise(history)), history
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").exists()
    assert summary["padding_fraction"] == 0.0


def test_base_without_fim_tokens_gets_them_added(micro_dir, tmp_path):
    """A base with no FIM tokens (like SmolLM2) gets Hearth's added tokens, trained and merged."""
    import json
    import shutil

    from trainer.tools.tokenizers import tokenizer_load
    from trainer.training.loop import train
    from trainer.training.modeling import adapter_merge, method_choose

    plain = tmp_path / "plain"
    shutil.copytree(micro_dir, plain)
    # Rename the FIM tokens so no known format is detected.
    for name in ("tokenizer.json", "tokenizer_config.json"):
        text = (plain / name).read_text().replace("hearth_fim_", "other_")
        (plain / name).write_text(text)
    assert fim_format_detect(tokenizer_load(str(plain)).get_vocab()) is None
    settings = LoraSettings(max_steps=2, seq_len=64, grad_accum=1, eval_sequences=2, warmup_steps=0)
    summary = train(
        hf_path=str(plain),
        train_files=_files()[:2],
        heldout_files=_files()[:1],
        settings=settings,
        method=method_choose("none"),
        out_dir=tmp_path / "run",
        log=lambda m: None,
    )
    assert summary["fim_tokens_added"] >= 3 and summary["fim_format"] == "starcoder"
    fmt = adapter_merge(str(plain), tmp_path / "run" / "adapter", tmp_path / "merged")
    assert fmt.name == "starcoder"
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert config["vocab_size"] == len(tokenizer_load(str(tmp_path / "merged")))


def test_cancel_leaves_a_checkpoint_the_next_attempt_resumes_from(micro_dir, tmp_path):
    """A cancel saves a checkpoint (weights in state.pt, the loop's state in meta.json) and raises; the
    next call resumes at that step, reports progress from there and deletes the checkpoint at the end."""
    import json

    from trainer.training.loop import TrainingCancelled, train
    from trainer.training.modeling import method_choose

    files = _files()
    settings = LoraSettings(
        max_steps=6,
        seq_len=64,
        grad_accum=2,
        eval_every_steps=2,
        eval_sequences=2,
        warmup_steps=1,
        early_stopping_patience=10,
    )
    run = tmp_path / "run"
    asked = []
    kwargs = {
        "hf_path": str(micro_dir),
        "train_files": files,
        "heldout_files": files[:1],
        "settings": settings,
        "method": method_choose("none"),
        "out_dir": run,
        "progress_every_s": 0.0,
    }
    with pytest.raises(TrainingCancelled):
        train(**kwargs, should_stop=lambda: asked.append(1) or len(asked) >= 3, log=lambda m: None)
    meta = json.loads((run / "checkpoint" / "meta.json").read_text())
    assert meta["step"] == 3 and meta["total_steps"] == 6 and [h["step"] for h in meta["history"]] == [2]
    assert (run / "checkpoint" / "state.pt").exists() and (run / "adapter" / "meta.json").exists()

    lines, rows = [], []
    summary = train(**kwargs, log=lines.append, on_progress=rows.append)
    assert "resumed from checkpoint at step 3" in lines
    assert [r.step for r in rows] == [4, 5, 6] and all(r.total_steps == 6 for r in rows)
    assert all(r.loss > 0 and r.tokens_per_s > 0 and r.eta_s is not None for r in rows)
    assert [r.eval_loss is not None for r in rows] == [True, False, True]
    assert [h["step"] for h in summary["eval_history"]] == [2, 4, 6] and summary["steps"] == 6
    assert sorted(p.name for p in run.iterdir()) == ["adapter", "summary.json"]
