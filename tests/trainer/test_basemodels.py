"""Base model import: safetensors only, no remote code, converter-supported architectures, FIM
format detected from locally built tokenizers that carry each family's tokens."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from appliance.errors import BaseModelError
from appliance.llm.fim import CODELLAMA, DEEPSEEK, HEARTH, QWEN, STARCODER


def _tokenizer_folder(path: Path, specials: list[str]) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", *specials], show_progress=False)
    tok.train_from_iterator(["def f(x):\n    return x + 1\n"] * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    path.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(path)
    return path


@pytest.mark.parametrize("fmt", [QWEN, STARCODER, DEEPSEEK, CODELLAMA, HEARTH], ids=lambda f: f.name)
def test_fim_format_detected_from_each_family(tmp_path, fmt):
    from trainer.basemodels.importer import tokenizer_fim

    folder = _tokenizer_folder(tmp_path / fmt.name, fmt.special_tokens)
    assert tokenizer_fim(folder) == fmt


def test_tokenizer_without_fim_tokens_is_accepted_as_non_infilling(tmp_path):
    from trainer.basemodels.importer import tokenizer_fim

    assert tokenizer_fim(_tokenizer_folder(tmp_path / "plain", ["<|endoftext|>"])) is None


def test_pickle_remote_code_and_unknown_architectures_are_refused(micro_dir, tmp_path):
    from trainer.basemodels.importer import folder_check

    folder = shutil.copytree(micro_dir, tmp_path / "m")
    assert folder_check(folder)["architectures"] == ["LlamaForCausalLM"]

    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(BaseModelError, match="pickle checkpoints"):
        folder_check(folder)
    (folder / "pytorch_model.bin").unlink()

    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "x.Model"}}))
    with pytest.raises(BaseModelError, match="never runs remote code"):
        folder_check(folder)
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["MadeUpForCausalLM"]}))
    with pytest.raises(BaseModelError, match="not supported by the GGUF converter"):
        folder_check(folder)
    with pytest.raises(BaseModelError, match="not a folder"):
        folder_check(tmp_path / "missing")


@pytest.mark.django_db
def test_import_command_registers_a_servable_base(micro_dir):
    from django.core.management import call_command

    from trainer.models import BaseModel

    call_command("basemodel_import", str(micro_dir), "--slug", "micro-imported")
    base = BaseModel.objects.get(slug="micro-imported")
    assert base.status == "ready" and base.can_infill and base.fim_format == "hearth"
    assert Path(base.gguf_path).is_file() and base.manifest["files"]["model.safetensors"]
