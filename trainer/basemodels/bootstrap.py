"""Hearth's micro base model, built from nothing but the running interpreter's standard library.

Tests and the offline demo need a base model without a model hub: a tiny Llama and a SentencePiece
tokenizer trained on the stdlib sources, carrying Hearth's FIM tokens. The build is deterministic:
one seed gives the same bytes again on the same Python and library versions.
"""

from __future__ import annotations

import io
import json
import logging
import platform
import sysconfig
import time
from importlib import metadata
from pathlib import Path

from appliance.errors import BaseModelError
from appliance.llm.fim import HEARTH
from appliance.paths import sha256_file

logger = logging.getLogger(__name__)

_SKIP_DIRS = frozenset({"test", "tests", "idlelib", "site-packages"})
_UNK, _BOS = "<unk>", "<s>"
# Control pieces: never produced from plain text by SentencePiece, typed CONTROL by the GGUF converter.
_CONTROL = (HEARTH.eot, HEARTH.pad, HEARTH.prefix, HEARTH.suffix, HEARTH.middle, HEARTH.file_sep)
# Model shape: ~1.3M parameters, converts and loads in milliseconds.
_SHAPE = {
    "hidden_size": 128,
    "intermediate_size": 352,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
}
_PRETRAIN = {"seq_len": 128, "batch_size": 16, "lr": 1e-3, "warmup": 20}
_MIN_VOCAB = 512
_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
)


def micro_model_build(
    out_dir: Path,
    *,
    seed: int = 0,
    vocab_size: int = 2048,
    corpus_bytes: int = 3_000_000,
    pretrain_steps: int = 0,
) -> dict:
    """Build a tiny Llama-architecture model + SentencePiece tokenizer with FIM tokens into out_dir
    (HF folder: config.json, model.safetensors, tokenizer.model, tokenizer.json, tokenizer_config.json,
    special_tokens_map.json, generation_config.json) and write out_dir/manifest.json; return the
    manifest dict."""
    if vocab_size < _MIN_VOCAB:
        raise BaseModelError(f"The micro model needs a vocabulary of at least {_MIN_VOCAB} tokens.")
    if pretrain_steps < 0 or corpus_bytes <= 0:
        raise BaseModelError("pretrain_steps must be zero or more and corpus_bytes more than zero.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    texts, n_files, n_bytes = _corpus_read(corpus_bytes)
    t1 = time.perf_counter()
    logger.info("micro model: corpus %d files, %d bytes in %.1fs", n_files, n_bytes, t1 - t0)

    sp = _tokenizer_train(texts, vocab_size, out_dir / "tokenizer.model")
    _hf_tokenizer_write(sp, out_dir)
    t2 = time.perf_counter()
    logger.info("micro model: tokenizer of %d pieces in %.1fs", sp.get_piece_size(), t2 - t1)

    n_params = _model_build(sp, texts, out_dir, seed=seed, pretrain_steps=pretrain_steps)
    logger.info(
        "micro model: %d parameters, %d pretraining steps in %.1fs",
        n_params,
        pretrain_steps,
        time.perf_counter() - t2,
    )

    manifest = {
        "kind": "hearth-micro",
        "architecture": "LlamaForCausalLM",
        "fim_format": HEARTH.name,
        "seed": seed,
        "vocab_size": sp.get_piece_size(),
        "parameters": n_params,
        "pretrain_steps": pretrain_steps,
        "special_token_ids": {t: sp.piece_to_id(t) for t in (_UNK, _BOS, *_CONTROL)},
        "corpus": {
            "source": "python-stdlib",
            "python": platform.python_version(),
            "files": n_files,
            "bytes": n_bytes,
        },
        "model": _SHAPE,
        "files": {name: sha256_file(out_dir / name) for name in _FILES},
        "library_versions": {
            name: metadata.version(name)
            for name in ("torch", "transformers", "tokenizers", "sentencepiece", "safetensors")
        },
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    logger.info("micro model: built in %.1fs", time.perf_counter() - t0)
    return manifest


def _corpus_read(limit: int) -> tuple[list[str], int, int]:
    """The stdlib's .py sources in path order, whole files, the last cut at a line end to fit `limit`."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(
        (p for p in root.rglob("*.py") if not _SKIP_DIRS & set(p.relative_to(root).parts[:-1])),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    texts: list[str] = []
    total = 0
    for path in paths:
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a legacy-encoded file would decode differently per machine; leave it out
        if total + len(data) > limit:
            data = data[: data.rfind(b"\n", 0, limit - total) + 1]
            if data:
                texts.append(data.decode("utf-8"))
                total += len(data)
            break
        texts.append(data.decode("utf-8"))
        total += len(data)
    if not texts:
        raise BaseModelError("No Python standard library sources were found to build the micro model from.")
    return texts, len(texts), total


def _tokenizer_train(texts: list[str], vocab_size: int, path: Path):
    """Train a byte-fallback BPE SentencePiece model that reproduces code exactly, and save it."""
    import sentencepiece as spm

    # One sentence per non-blank line: no piece spans a newline, and "\n" is its own piece, so a
    # prompt cut at a line end ends on the token the model saw there.
    lines = [line for text in texts for line in text.split("\n") if line.strip()]
    proto = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=proto,
            model_type="bpe",  # llama.cpp's SPM tokenizer merges by score, which is BPE's rule
            vocab_size=vocab_size,
            byte_fallback=True,
            character_coverage=0.9995,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            split_by_whitespace=True,
            allow_whitespace_only_pieces=True,
            split_digits=False,
            num_threads=1,
            shuffle_input_sentence=False,
            input_sentence_size=0,
            unk_id=0,
            bos_id=1,
            eos_id=-1,  # end of text is <hearth_eot>, a control piece below
            pad_id=-1,
            control_symbols=list(_CONTROL),
            user_defined_symbols=["\n"],
            hard_vocab_limit=True,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise BaseModelError(f"The micro model's tokenizer could not be trained: {exc}") from exc
    path.write_bytes(proto.getvalue())
    return spm.SentencePieceProcessor(model_proto=proto.getvalue())


def _hf_tokenizer_write(sp, out_dir: Path) -> None:
    """Write the transformers files for the SentencePiece model.

    tokenizer.json is included because transformers 5 reads a bare tokenizer.model only with
    protobuf installed; without it, it falls back to tiktoken and fails. The special pieces are
    also listed special in added_tokens_decoder: transformers parses them out of text from there,
    and llama.cpp's converter types whatever it lists there as CONTROL.
    """
    from transformers import LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    specials = [_UNK, _BOS, *_CONTROL]
    extra = [HEARTH.prefix, HEARTH.suffix, HEARTH.middle, HEARTH.file_sep]
    tokenizer = LlamaTokenizer(
        vocab=vocab,
        merges=generate_merges(vocab, skip_tokens=specials),
        unk_token=_UNK,
        bos_token=_BOS,
        eos_token=HEARTH.eot,
        pad_token=HEARTH.pad,
        add_prefix_space=False,
        legacy=False,
        extra_special_tokens=extra,
    )
    (out_dir / "tokenizer.json").write_text(tokenizer.backend_tokenizer.to_str(pretty=True) + "\n")

    roles = {"bos_token": _BOS, "eos_token": HEARTH.eot, "pad_token": HEARTH.pad, "unk_token": _UNK}
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "backend": "tokenizers",
        **roles,
        "extra_special_tokens": extra,
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,  # also tells llama.cpp's converter: no leading space
        "legacy": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": _SHAPE["max_position_embeddings"],
        "added_tokens_decoder": {
            str(sp.piece_to_id(t)): {
                "content": t,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for t in specials
        },
    }
    special_map = {**roles, "additional_special_tokens": extra}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")


def _model_build(sp, texts: list[str], out_dir: Path, *, seed: int, pretrain_steps: int) -> int:
    """Initialise the Llama from `seed`, optionally pretrain it on the corpus, save it in float32."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    eot, pad = sp.piece_to_id(HEARTH.eot), sp.piece_to_id(HEARTH.pad)
    config = LlamaConfig(
        vocab_size=sp.get_piece_size(),
        **_SHAPE,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=sp.piece_to_id(_BOS),
        eos_token_id=eot,
        pad_token_id=pad,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    if pretrain_steps:
        _pretrain(model, sp, texts, seed=seed, steps=pretrain_steps)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=eot, pad_token_id=pad
    )
    model.save_pretrained(out_dir)
    return sum(p.numel() for p in model.parameters())


def _pretrain(model, sp, texts: list[str], *, seed: int, steps: int) -> None:
    """Next-token training on random windows of the corpus, files separated by <hearth_eot>."""
    import torch

    eot = sp.piece_to_id(HEARTH.eot)
    ids: list[int] = []
    for piece_ids in sp.encode(texts):
        ids.extend(piece_ids)
        ids.append(eot)
    data = torch.tensor(ids, dtype=torch.long)
    seq_len, batch_size = _PRETRAIN["seq_len"], _PRETRAIN["batch_size"]
    if len(data) <= seq_len:
        raise BaseModelError("The corpus is too small to pretrain the micro model on.")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=_PRETRAIN["lr"], weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / _PRETRAIN["warmup"])
    )
    model.train()
    for step in range(steps):
        starts = torch.randint(0, len(data) - seq_len, (batch_size,), generator=generator)
        batch = torch.stack([data[s : s + seq_len] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss  # the model shifts labels itself
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps - 1:
            logger.info("micro model: pretrain step %d/%d loss %.3f", step + 1, steps, loss.item())
