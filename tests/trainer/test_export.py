"""GGUF export: convert a tiny Llama with the pinned converter, quantize, write FIM keys, load it."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from appliance.errors import ExportError
from appliance.llm.fim import HEARTH

PROBE = "def add(a, b):\n    return a + b\n"
FIM_ROLES = ("prefix", "suffix", "middle", "pad", "file_sep", "eot")


@pytest.fixture(scope="module")
def converter():
    from trainer.tools.converter import converter_dir

    try:
        return converter_dir()
    except ExportError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> tuple[Path, dict]:
    """A ~0.3M-parameter Llama + SentencePiece tokenizer with Hearth's FIM tokens, built in seconds."""
    from trainer.basemodels.bootstrap import micro_model_build

    hf_dir = tmp_path_factory.mktemp("micro") / "hf"
    manifest = micro_model_build(hf_dir, corpus_bytes=60_000, vocab_size=512)
    return hf_dir, manifest


@pytest.fixture(scope="module")
def f16(converter, micro, tmp_path_factory) -> Path:
    from trainer.tools.gguf import gguf_convert

    lines: list[str] = []
    out = gguf_convert(micro[0], tmp_path_factory.mktemp("gguf") / "model-f16.gguf", log=lines.append)
    assert any("Model successfully exported" in line for line in lines), lines[-5:]
    return out


def _fim_ids(manifest: dict) -> dict[str, int]:
    ids = manifest["special_token_ids"]
    return {role: ids[getattr(HEARTH, role)] for role in FIM_ROLES}


def test_convert_quantize_verify(f16, micro, tmp_path):
    import gguf

    from appliance.paths import sha256_file
    from trainer.tools.gguf import gguf_quantize, gguf_verify

    assert gguf.GGUFReader(f16).get_field("general.file_type").contents() == 1  # MOSTLY_F16
    for kind, ftype in (("q8_0", 7), ("q4_k_m", 15)):
        out = gguf_quantize(f16, tmp_path / f"model-{kind}.gguf", kind)
        assert gguf.GGUFReader(out).get_field("general.file_type").contents() == ftype
        result = gguf_verify(out, probe_text=PROBE)
        assert result["loads"] is True
        assert result["n_vocab"] == micro[1]["vocab_size"]
        assert result["n_params"] > 0 and result["seconds"] < 30
        assert len(sha256_file(out)) == 64
    assert not list(tmp_path.glob(".*partial")), "no temp file left behind"


def test_fim_tokens_written_and_inherited(f16, micro, tmp_path):
    import shutil

    import gguf
    import llama_cpp

    from trainer.tools.gguf import gguf_quantize, gguf_set_fim_tokens

    path = shutil.copy(f16, tmp_path / "model-f16.gguf")
    ids = _fim_ids(micro[1])
    gguf_set_fim_tokens(path, ids)
    # Set on the f16, the keys are carried into every quantization made from it.
    q8 = gguf_quantize(path, tmp_path / "model-q8_0.gguf", "q8_0")
    expected = {
        "tokenizer.ggml.fim_pre_token_id": ids["prefix"],
        "tokenizer.ggml.fim_suf_token_id": ids["suffix"],
        "tokenizer.ggml.fim_mid_token_id": ids["middle"],
        "tokenizer.ggml.fim_pad_token_id": ids["pad"],
        "tokenizer.ggml.fim_sep_token_id": ids["file_sep"],
        "tokenizer.ggml.eot_token_id": ids["eot"],
    }
    for p in (path, q8):
        reader = gguf.GGUFReader(p)
        assert {k: reader.get_field(k).contents() for k in expected} == expected
        assert len(reader.tensors) == len(gguf.GGUFReader(f16).tensors)

    llm = llama_cpp.Llama(model_path=str(q8), n_ctx=128, verbose=False)
    try:
        tokens = llm.tokenize(f"{HEARTH.prefix}x = 1".encode(), add_bos=False, special=True)
        assert tokens[0] == ids["prefix"]
    finally:
        llm.close()

    with pytest.raises(ExportError, match="outside the vocabulary"):
        gguf_set_fim_tokens(path, {"prefix": 10**6})
    with pytest.raises(ExportError, match="Unknown FIM token role"):
        gguf_set_fim_tokens(path, {"fim_pre": 1})


def test_truncated_weights_fail_in_words(micro, tmp_path):
    import shutil

    from trainer.tools.gguf import gguf_convert

    bad = shutil.copytree(micro[0], tmp_path / "hf")
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ExportError, match="model.safetensors .* is truncated"):
        gguf_convert(bad, tmp_path / "out.gguf", log=lambda line: None)
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*partial"))


def test_converter_failure_carries_its_reason(converter, micro, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from trainer.tools.gguf import gguf_convert

    bad = shutil.copytree(micro[0], tmp_path / "hf")
    tensors = load_file(bad / "model.safetensors")
    tensors["model.layers.0.mystery.weight"] = tensors["model.layers.0.input_layernorm.weight"].clone()
    save_file(tensors, bad / "model.safetensors")
    with pytest.raises(ExportError, match=r"failed \(exit 1\): .*mystery") as info:
        gguf_convert(bad, tmp_path / "out.gguf", log=lambda line: None)
    assert "\n" in str(info.value)  # the converter's last lines come along
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*partial"))


def test_unknown_architecture_is_refused_before_the_converter_runs(converter, micro, tmp_path):
    import shutil

    from trainer.tools.gguf import gguf_convert

    bad = shutil.copytree(micro[0], tmp_path / "hf")
    config = json.loads((bad / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="NoSuchModelForCausalLM is not supported by the GGUF converter"):
        gguf_convert(bad, tmp_path / "out.gguf", log=lambda line: None)
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*partial"))


def test_broken_gguf_fails_in_words(tmp_path):
    from trainer.tools.gguf import gguf_quantize, gguf_verify

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(ExportError, match="Quantizing bad.gguf to q8_0 failed"):
        gguf_quantize(bad, tmp_path / "q.gguf", "q8_0")
    with pytest.raises(ExportError, match="could not load bad.gguf"):
        gguf_verify(bad, probe_text=PROBE)


def _fake_sdist(path: Path, version: str) -> Path:
    top = f"llama_cpp_python-{version}/vendor/llama.cpp"
    files = {
        f"{top}/convert_hf_to_gguf.py": b"print('converter')\n",
        f"{top}/convert_lora_to_gguf.py": b"print('lora converter')\n",
        f"{top}/LICENSE": b"MIT\n",
        f"{top}/conversion/__init__.py": b"",
        f"{top}/gguf-py/gguf/__init__.py": b"",
        f"{top}/models/templates/x.jinja": b"{{ x }}",
        f"{top}/ggml/src/ggml.c": b"int main;",  # not part of the converter
        f"llama_cpp_python-{version}/pyproject.toml": b"",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_converter_install_from_sdist(tmp_path):
    from trainer.tools.converter import converter_dir, converter_install, llama_cpp_version

    version = llama_cpp_version()
    sdist = _fake_sdist(tmp_path / f"llama_cpp_python-{version}.tar.gz", version)
    lines: list[str] = []
    target = converter_install(dest=tmp_path / "conv", sdist=sdist, log=lines.append)
    assert target == converter_dir(tmp_path / "conv") == tmp_path / "conv" / f"llama.cpp-{version}"
    assert (target / "gguf-py" / "gguf" / "__init__.py").is_file()
    assert (target / "models" / "templates" / "x.jinja").is_file()
    assert not (target / "ggml").exists()
    meta = json.loads((target / "converter.json").read_text())
    assert meta["version"] == version and len(meta["script_sha256"]) == 64
    converter_install(dest=tmp_path / "conv", sdist=sdist, log=lines.append)
    assert "already installed" in lines[-1]
    with pytest.raises(ExportError, match="python -m trainer.tools.converter install"):
        converter_dir(tmp_path / "elsewhere")
