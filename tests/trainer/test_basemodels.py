"""Base model import: safetensors only, no remote code, converter-supported architectures, FIM
format detected from locally built tokenizers that carry each family's tokens."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
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


# ---------------------------------------------------------------- no code from a model folder ever runs

EVIL = """from pathlib import Path
Path({marker!r}).write_text("code from the model folder ran")
from transformers import PreTrainedTokenizerFast


class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


def _qwen1_weights(folder: Path, hidden: int = 128, vocab: int = 2048, inner: int = 352) -> None:
    """One layer of Qwen-1 (QWenLMHeadModel) tensors, enough for the converter to reach the vocab."""
    import torch
    from safetensors.torch import save_file

    p = "transformer.h.0."
    tensors = {
        "transformer.wte.weight": torch.zeros(vocab, hidden),
        "transformer.ln_f.weight": torch.ones(hidden),
        "lm_head.weight": torch.zeros(vocab, hidden),
        p + "ln_1.weight": torch.ones(hidden),
        p + "attn.c_attn.weight": torch.zeros(3 * hidden, hidden),
        p + "attn.c_attn.bias": torch.zeros(3 * hidden),
        p + "attn.c_proj.weight": torch.zeros(hidden, hidden),
        p + "ln_2.weight": torch.ones(hidden),
        p + "mlp.w1.weight": torch.zeros(inner, hidden),
        p + "mlp.w2.weight": torch.zeros(inner, hidden),
        p + "mlp.c_proj.weight": torch.zeros(hidden, inner),
    }
    (folder / "model.safetensors").unlink()
    save_file(tensors, str(folder / "model.safetensors"))


def _hostile(micro_dir: Path, folder: Path, kind: str) -> tuple[Path, Path]:
    """A model folder whose tokenizer_config.json maps AutoTokenizer to a .py file of its own that
    writes a marker file when imported. Returns (folder, marker)."""
    folder = shutil.copytree(micro_dir, folder)
    marker = folder.parent / f"MARKER-{kind}"
    (folder / "tokenization_evil.py").write_text(EVIL.format(marker=str(marker)))
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    tok["auto_map"] = {
        "AutoTokenizer": ["tokenization_evil.EvilTokenizer", "tokenization_evil.EvilTokenizer"]
    }
    config = json.loads((folder / "config.json").read_text())
    if kind == "qwen":
        # Qwen 1: the converter's _set_vocab_qwen loads the tokenizer with trust_remote_code=True.
        # tokenizer_class stays a built-in one, so transformers without remote code loads it fine.
        config["architectures"], config["num_hidden_layers"] = ["QWenLMHeadModel"], 1
        _qwen1_weights(folder)
    else:  # llama: LlamaModel.set_vocab trusts remote code for this tokenizer class
        tok["tokenizer_class"] = "HybridDNATokenizer"
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer_config.json").write_text(json.dumps(tok))
    return folder, marker


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["qwen", "llama"])
def test_no_code_from_a_model_folder_ever_runs(micro_dir, tmp_path, kind):
    from django.core.management import CommandError, call_command

    from appliance.errors import ExportError
    from trainer.models import BaseModel
    from trainer.tools.gguf import gguf_convert, gguf_convert_adapter

    folder, marker = _hostile(micro_dir, tmp_path / "hostile", kind)
    with pytest.raises(CommandError) as imported:
        call_command("basemodel_import", str(folder), "--slug", f"hostile-{kind}")
    assert not marker.exists(), "the import ran code from the model folder"
    assert re.match(
        r"Refusing .*hostile: The folder contains Python code \(tokenization_evil.py\)\. "
        r"Hearth never runs remote code",
        str(imported.value),
    ), str(imported.value)
    assert not BaseModel.objects.filter(slug=f"hostile-{kind}").exists()

    # The conversion itself (import, bootstrap and export all go through it) refuses the folder too.
    with pytest.raises(ExportError) as converted:
        gguf_convert(folder, tmp_path / "out.gguf", log=lambda line: None)
    assert not marker.exists(), "the GGUF converter ran code from the model folder"
    assert str(converted.value).startswith("Not converting hostile: The folder contains Python code")
    (folder / "tokenization_evil.py").rename(tmp_path / "moved-out.py")  # the auto_map alone is refused too
    with pytest.raises(ExportError, match=r"Not converting hostile: tokenizer_config.json has an auto_map"):
        gguf_convert(folder, tmp_path / "out.gguf", log=lambda line: None)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    with pytest.raises(ExportError, match="Not converting hostile"):
        gguf_convert_adapter(adapter, folder, tmp_path / "adapter.gguf", log=lambda line: None)
    assert not marker.exists(), "the GGUF converter ran code from the model folder"
    assert not list(tmp_path.glob("*.gguf"))


@pytest.mark.parametrize(
    "case, reason",
    [
        ("py-in-subfolder", r"Python code \(extra/helpers/mod.py\)"),
        ("auto-map-in-any-json", r"generation_config.json has an auto_map"),
        ("auto-map-nested", r"extra/settings.json has an auto_map"),
        ("link-outside", r"tokenizer.json is a symbolic link to .*outside the model folder"),
        ("qwen1-without-code", r"QWenLMHeadModel is refused: .*trust_remote_code=True"),
        ("interns1-around-qwen3", r"InternS1ForConditionalGeneration"),
        ("hybriddna-tokenizer", r"tokenizer class HybridDNATokenizer"),
    ],
)
def test_folder_rules(micro_dir, tmp_path, case, reason):
    from trainer.basemodels.importer import folder_check

    folder = shutil.copytree(micro_dir, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    if case == "py-in-subfolder":
        (folder / "extra" / "helpers").mkdir(parents=True)
        (folder / "extra" / "helpers" / "mod.py").write_text("print('hi')\n")
    elif case == "auto-map-in-any-json":
        gen = json.loads((folder / "generation_config.json").read_text())
        (folder / "generation_config.json").write_text(json.dumps({**gen, "auto_map": {"x": "y.Z"}}))
    elif case == "auto-map-nested":
        (folder / "extra").mkdir()
        (folder / "extra" / "settings.json").write_text(json.dumps({"a": [{"b": {"auto_map": {}}}]}))
    elif case == "link-outside":
        outside = tmp_path / "elsewhere.json"
        (folder / "tokenizer.json").rename(outside)
        (folder / "tokenizer.json").symlink_to(outside)
    elif case == "qwen1-without-code":
        config["architectures"] = ["QWenLMHeadModel"]
    elif case == "interns1-around-qwen3":
        config = {
            **config,
            "architectures": ["InternS1ForConditionalGeneration"],
            "text_config": {**config, "architectures": ["Qwen3ForCausalLM"]},
        }
    elif case == "hybriddna-tokenizer":
        tok = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(
            json.dumps({**tok, "tokenizer_class": "HybridDNATokenizer"})
        )
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BaseModelError, match=reason):
        folder_check(folder)


@pytest.mark.django_db
def test_import_copies_only_known_files(micro_dir, tmp_path):
    from trainer.basemodels.services import basemodel_import

    folder = shutil.copytree(micro_dir, tmp_path / "m")
    (folder / "README.md").write_text("# micro\n")
    (folder / "LICENSE").write_text("Apache-2.0\n")
    (folder / "notes.dat").write_text("not a model file\n")
    (folder / "original").mkdir()
    (folder / "original" / "consolidated.00.pth").write_bytes(b"\x80\x04pickle")  # left behind, never read
    (folder / "special_tokens_map.json").rename(folder / "real_map.json")
    (folder / "special_tokens_map.json").symlink_to("real_map.json")  # a link inside the folder is fine
    base = basemodel_import(path=folder, slug="micro-known-files")
    copied = sorted(p.name for p in Path(base.hf_path).iterdir())
    assert (
        copied
        == sorted(base.manifest["files"])
        == [
            "LICENSE",
            "README.md",
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer.model",
            "tokenizer_config.json",
        ]
    )
    assert not (Path(base.hf_path) / "special_tokens_map.json").is_symlink()


@pytest.mark.django_db
@pytest.mark.parametrize("slug", ["../../x", "..", "a/b", "/tmp/x", ".hidden", "x" * 101])
def test_import_slug_cannot_leave_the_instance(micro_dir, slug, settings):
    from django.core.management import CommandError, call_command

    from trainer.models import BaseModel

    before = sorted(Path(settings.HEARTH_HOME).parent.iterdir())
    with pytest.raises(CommandError, match="is not a valid name for a base model"):
        call_command("basemodel_import", str(micro_dir), "--slug", slug)
    assert sorted(Path(settings.HEARTH_HOME).parent.iterdir()) == before
    assert not BaseModel.objects.exists()


def test_instance_paths_stay_inside(settings):
    from appliance import paths
    from appliance.errors import HearthError

    for bad in ("../x", "..", "a/../../b", "/etc"):
        with pytest.raises(HearthError, match="outside"):
            paths.basemodel_dir(bad)
    assert paths.basemodel_dir("fine").parent == paths.basemodels_dir().resolve()


def _audit(*flags: str) -> dict:
    """The audit in a fresh interpreter: CPython 3.11's `ast` shares one recursion counter across
    threads, so a parse beside another thread's traceback formatting can fail spuriously."""
    import sys

    from trainer.tools.converter import converter_dir

    out = subprocess.run(
        [sys.executable, "-m", "trainer.basemodels.converter_audit", "--json", *flags, str(converter_dir())],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_allowlist_matches_the_pinned_converter():
    """SAFE_ARCHITECTURES is data; this re-derives it from the installed converter's sources."""
    from trainer.tools.architectures import SAFE_ARCHITECTURES

    found = _audit("--gated")
    reaching = {arch: path for arch, path in found.items() if path}
    assert not SAFE_ARCHITECTURES & set(reaching), (
        "listed architectures now reach trust_remote_code: "
        + "; ".join(f"{a}: {' -> '.join(reaching[a])}" for a in sorted(SAFE_ARCHITECTURES & set(reaching)))
    )
    assert SAFE_ARCHITECTURES <= set(found), "listed architectures the converter no longer registers"
    assert {"QWenLMHeadModel", "StableLmForCausalLM", "ChatGLMModel", "DeepseekV2ForCausalLM"} <= set(
        reaching
    )
    assert {
        "LlamaForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
        "Starcoder2ForCausalLM",
    } <= SAFE_ARCHITECTURES
    ungated = _audit()
    assert ungated["LlamaForCausalLM"] and ungated["Qwen3ForCausalLM"]  # the gates are what admits them
