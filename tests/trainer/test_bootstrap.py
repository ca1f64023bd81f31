"""The micro base model: deterministic, FIM tokens special everywhere, exact code round-trip, and a GGUF
that llama.cpp tokenizes and computes the same way as transformers."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.errors import BaseModelError, ExportError
from appliance.llm.fim import HEARTH, fim_format_detect
from trainer.basemodels.bootstrap import micro_model_build

CODE = (
    "import os\n"
    "\n"
    "\n"
    "class Walker:\n"
    '    """Walk a tree."""\n'
    "\n"
    "    def walk(self, root):  \n"
    "        for name in os.listdir(root):\n"
    "\t\tyield  name  # tab-indented, two spaces inside\n"
    "            if name == 'é€😀':\n"
    "                return {'a': [1, 2,  3]}\n"
)
from trainer.basemodels.bootstrap import _FILES as HF_FILES_LIST

HF_FILES = set(HF_FILES_LIST)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("micro") / "hf"
    return out, micro_model_build(out, seed=0)


@pytest.fixture(scope="module")
def tokenizer(micro):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(micro[0])


def test_same_seed_builds_identical_files(micro, tmp_path):
    out, manifest = micro
    again = micro_model_build(tmp_path / "again", seed=0)
    assert again["files"] == manifest["files"]
    assert {"model.safetensors", "tokenizer.model"} <= set(manifest["files"])
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_manifest_lists_every_file_with_its_sha256(micro):
    out, manifest = micro
    assert set(manifest["files"]) == HF_FILES
    for name, digest in manifest["files"].items():
        assert _sha256(out / name) == digest
    assert manifest["kind"] == "hearth-micro"
    assert manifest["architecture"] == "LlamaForCausalLM"
    assert manifest["fim_format"] == "hearth"
    assert manifest["vocab_size"] == 2048
    assert manifest["corpus"]["source"] == "python-stdlib"
    assert 0 < manifest["corpus"]["bytes"] <= 3_000_000
    assert str(out.parent) not in (out / "manifest.json").read_text()


def test_fim_tokens_are_single_special_ids(micro, tokenizer):
    _, manifest = micro
    assert fim_format_detect(tokenizer.get_vocab()) == HEARTH
    for text in HEARTH.special_tokens:
        token_id = tokenizer.convert_tokens_to_ids(text)
        assert token_id == manifest["special_token_ids"][text]
        assert token_id != tokenizer.unk_token_id
        assert token_id in tokenizer.all_special_ids
        ids = tokenizer.encode(f"x = 1\n{text}def f():\n", add_special_tokens=False)
        assert ids.count(token_id) == 1
    assert tokenizer.eos_token == HEARTH.eot
    assert tokenizer.pad_token == HEARTH.pad
    assert tokenizer.bos_token == "<s>"
    assert tokenizer.encode("pass")[0] != tokenizer.bos_token_id  # no BOS added to code


def test_tokenizer_config_marks_fim_tokens_special(micro):
    out, _ = micro
    decoder = json.loads((out / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    special = {entry["content"] for entry in decoder.values() if entry["special"]}
    assert set(HEARTH.special_tokens) <= special


def test_indented_code_round_trips(tokenizer):
    ids = tokenizer.encode(CODE, add_special_tokens=False)
    assert tokenizer.decode(ids) == CODE
    # A newline is a token of its own, never glued to the next line's indentation.
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert all(p == "\n" or "\n" not in p for p in pieces)


def test_forward_pass_gives_finite_loss(micro, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(micro[0])
    assert model.dtype == torch.float32
    ids = torch.tensor([tokenizer.encode(CODE)])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert math.isfinite(loss)
    # Untrained: close to a uniform guess over the vocabulary.
    assert abs(loss - math.log(len(tokenizer))) < 1.0


def test_gguf_tokenizes_and_computes_like_transformers(micro, tokenizer, tmp_path):
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.tools.converter import converter_dir
    from trainer.tools.gguf import gguf_convert

    try:
        converter_dir()
    except ExportError as exc:
        pytest.skip(str(exc))
    import llama_cpp

    out, _ = micro
    gguf = gguf_convert(out, tmp_path / "micro-f16.gguf", outtype="f16", log=lambda line: None)

    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=512, logits_all=True, verbose=False)
    for text in HEARTH.special_tokens:
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == [
            tokenizer.convert_tokens_to_ids(text)
        ]
        # As plain text (special=False), user input never becomes a control token.
        assert len(llm.tokenize(text.encode(), add_bos=False, special=False)) > 1
    assert llm.token_eos() == tokenizer.eos_token_id

    ids = tokenizer.encode(CODE, add_special_tokens=False)
    assert llm.tokenize(CODE.encode(), add_bos=False, special=False) == ids
    assert llm.detokenize(ids) == CODE.encode()

    llm.eval(ids)
    model = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    assert np.abs(np.asarray(llm.scores[: len(ids)]) - expected).max() < 1e-2

    llm.reset()
    fim = [tokenizer.convert_tokens_to_ids(HEARTH.prefix), *tokenizer.encode("def f():\n    ")]
    fim += [tokenizer.convert_tokens_to_ids(HEARTH.suffix), *tokenizer.encode("\n")]
    fim += [tokenizer.convert_tokens_to_ids(HEARTH.middle)]
    completion = llm.create_completion(fim, max_tokens=8, temperature=0.0)
    assert completion["usage"]["prompt_tokens"] == len(fim)
    assert completion["choices"][0]["finish_reason"] in ("length", "stop")


def test_too_small_vocabulary_is_refused(tmp_path):
    with pytest.raises(BaseModelError):
        micro_model_build(tmp_path / "x", vocab_size=100)


def test_import_pulls_in_no_torch():
    code = "import sys, trainer.basemodels.bootstrap; print('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"
