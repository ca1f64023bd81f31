"""Turn a Hugging Face model folder into GGUF files the engine can serve, and check they load.

Conversion runs llama.cpp's own converter (pinned to the installed llama-cpp-python, see
`trainer.tools.converter`) in a subprocess; quantization and the load check go through llama_cpp.
"""

from __future__ import annotations

import collections
import collections.abc
import ctypes
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.cpusets import llama_threads, usable_cpu_count
from appliance.errors import ExportError
from appliance.paths import atomic_file_replace

logger = logging.getLogger(__name__)

OUTTYPES = ("f32", "f16", "bf16", "q8_0", "auto")
QUANT_KINDS = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
# FimFormat field name -> the `Keys.Tokenizer` constant of gguf-py (the same strings in the PyPI
# gguf 0.19.0 and in the gguf-py vendored with llama.cpp 0.3.36).
FIM_KEYS = {
    "prefix": "FIM_PRE_ID",  # tokenizer.ggml.fim_pre_token_id
    "suffix": "FIM_SUF_ID",  # tokenizer.ggml.fim_suf_token_id
    "middle": "FIM_MID_ID",  # tokenizer.ggml.fim_mid_token_id
    "pad": "FIM_PAD_ID",  # tokenizer.ggml.fim_pad_token_id
    "repo_name": "FIM_REP_ID",  # tokenizer.ggml.fim_rep_token_id
    "file_sep": "FIM_SEP_ID",  # tokenizer.ggml.fim_sep_token_id
    "eot": "EOT_ID",  # tokenizer.ggml.eot_token_id
}
_TAIL_LINES = 12
_EXCEPTION_LINE = re.compile(r"^(ERROR:|[A-Za-z_][\w.]*(Error|Exception|Exit)\b)")
_CONVERT_TIMEOUT_S = 2 * 3600


def _partial(path: Path) -> Path:
    """A sibling temp name, so a finished file only ever appears by atomic rename
    (`atomic_file_replace`)."""
    return path.with_name(f".{path.name}.partial")


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"GGUF"
    except OSError:
        return False


def _weights_check(hf_dir: Path) -> None:
    """Fail fast, in words, on missing or truncated safetensors (the converter would say "mmap length")."""
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        if any(hf_dir.glob("pytorch_model*.bin")):
            return  # legacy pickles: left to the converter
        raise ExportError(f"{hf_dir} has no model weights (no *.safetensors file).")
    for path in files:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < n <= size - 8:
                raise ExportError(f"{path.name} in {hf_dir.name} is not a safetensors file, or is cut short.")
            try:
                header = json.loads(fh.read(n))
                end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise ExportError(
                    f"{path.name} in {hf_dir.name} has an unreadable safetensors header."
                ) from exc
        if 8 + n + end > size:
            raise ExportError(
                f"{path.name} in {hf_dir.name} is truncated: {size} bytes on disk, {8 + n + end} expected. "
                "Re-run the stage that wrote it."
            )


def _code_check(folder: Path) -> None:
    """The converter imports whatever Python a folder points it at (auto_map + trust_remote_code):
    refuse, before it starts, any folder that could make it run code of its own."""
    from trainer.tools.model_code import code_refusal

    reason = code_refusal(folder)
    if reason:
        raise ExportError(f"Not converting {folder.name}: {reason}")


def gguf_convert(
    hf_dir: Path,
    out_path: Path,
    *,
    outtype: str = "f16",
    log: Callable[[str], None] = print,
    timeout_s: float = _CONVERT_TIMEOUT_S,
    converter_root: Path | None = None,
) -> Path:
    """Convert the HF model in `hf_dir` to one GGUF file at `out_path` with llama.cpp's converter.

    Every converter line goes to `log`; on failure the ExportError carries the last lines.
    `converter_root` is where `trainer.tools.converter install` put the converter (default: its default).
    """
    from trainer.tools.converter import SCRIPT

    hf_dir, out_path = Path(hf_dir), Path(out_path)
    if outtype not in OUTTYPES:
        raise ExportError(f"Unknown GGUF output type {outtype!r}; expected one of {', '.join(OUTTYPES)}.")
    if not (hf_dir / "config.json").is_file():
        raise ExportError(f"{hf_dir} is not a Hugging Face model folder (no config.json).")
    _code_check(hf_dir)
    _weights_check(hf_dir)
    partial = _partial(out_path)
    _converter_run(
        SCRIPT,
        [str(hf_dir), "--outfile", str(partial), "--outtype", outtype],
        partial,
        label=hf_dir.name,
        log=log,
        timeout_s=timeout_s,
        converter_root=converter_root,
    )
    atomic_file_replace(partial, out_path)
    logger.info("converted %s to %s (%s)", hf_dir, out_path.name, outtype)
    return out_path


def gguf_convert_adapter(
    adapter_dir: Path,
    base_dir: Path,
    out_path: Path,
    *,
    log: Callable[[str], None] = print,
    timeout_s: float = _CONVERT_TIMEOUT_S,
    converter_root: Path | None = None,
) -> Path:
    """The LoRA adapter alone as a GGUF adapter file (llama.cpp's convert_lora_to_gguf.py)."""
    from trainer.tools.converter import LORA_SCRIPT

    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    _code_check(Path(base_dir))
    _code_check(adapter_dir)
    partial = _partial(out_path)
    _converter_run(
        LORA_SCRIPT,
        [str(adapter_dir), "--base", str(base_dir), "--outfile", str(partial), "--outtype", "f16"],
        partial,
        label=adapter_dir.name,
        log=log,
        timeout_s=timeout_s,
        converter_root=converter_root,
    )
    atomic_file_replace(partial, out_path)
    return out_path


def _converter_run(
    script: str,
    args: list[str],
    partial: Path,
    *,
    label: str,
    log: Callable[[str], None],
    timeout_s: float,
    converter_root: Path | None,
) -> None:
    """Run one of the pinned converter scripts into `partial`; ExportError with its last lines on failure."""
    from trainer.tools.converter import converter_dir

    tool = converter_dir(converter_root)
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(tool / "gguf-py"), str(tool), env.get("PYTHONPATH", "")) if p
    )
    env.pop("NO_LOCAL_GGUF", None)  # the converter must use its own gguf-py, not the PyPI one
    # No hub lookups, and no tqdm bars: their carriage returns would garble the log and the error.
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    cmd = [sys.executable, str(tool / script), *args]
    started = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    proc = subprocess.Popen(
        cmd,
        cwd=tool,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                log(line)
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - started
    if rc != 0 or not _is_gguf(partial):
        partial.unlink(missing_ok=True)
        why = "timed out" if rc < 0 and seconds >= timeout_s else f"exit {rc}"
        raise ExportError(
            f"GGUF conversion of {label} failed ({why}): {_headline(tail)}\n"
            + "\n".join(f"  {t}" for t in tail)
        )


def _headline(lines: collections.abc.Sequence[str]) -> str:
    """The converter's own reason: the last exception line (`ValueError: ...`), else its last line."""
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line.strip()):
            return line.strip()
    return lines[-1].strip() if lines else "(no output)"


@contextmanager
def _llama_log_captured() -> Iterator[list[str]]:
    """Route llama.cpp's C log into a list for the duration (its errors explain a failure)."""
    import llama_cpp
    import llama_cpp._logger as llama_logger

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def _capture(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(_capture, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        llama_cpp.llama_log_set(llama_logger.llama_log_callback, ctypes.c_void_p(0))


def _log_tail(lines: list[str]) -> str:
    text = "".join(lines).strip().splitlines()
    useful = [t for t in text if any(w in t.lower() for w in ("error", "fail", "invalid", "unable"))]
    return "\n".join(f"  {t}" for t in (useful or text)[-_TAIL_LINES:])


def gguf_quantize(src: Path, dst: Path, kind: str) -> Path:
    """Quantize GGUF `src` to `dst` as `kind` ("q8_0" or "q4_k_m"), on every core of this process's CPU set."""
    import llama_cpp

    src, dst = Path(src), Path(dst)
    if kind not in QUANT_KINDS:
        raise ExportError(f"Unknown quantization {kind!r}; expected one of {', '.join(QUANT_KINDS)}.")
    if not _is_gguf(src):
        raise ExportError(f"{src} is not a GGUF file.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(dst)
    partial.unlink(missing_ok=True)

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_KINDS[kind])
    params.nthread = usable_cpu_count()
    started = time.monotonic()
    with _llama_log_captured() as lines:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(partial).encode(), ctypes.byref(params))
    if rc != 0 or not _is_gguf(partial):
        partial.unlink(missing_ok=True)
        raise ExportError(f"Quantizing {src.name} to {kind} failed (code {rc}).\n{_log_tail(lines)}")
    atomic_file_replace(partial, dst)
    logger.info("quantized %s to %s (%s) in %.2f s", src.name, dst.name, kind, time.monotonic() - started)
    return dst


def gguf_set_fim_tokens(path: Path, token_ids: dict[str, int]) -> None:
    """Write the FIM/EOT special-token ids into a GGUF file, replacing it atomically.

    `token_ids` is keyed by FimFormat field name (prefix, suffix, middle, pad, repo_name, file_sep,
    eot). llama.cpp's converter leaves these keys out for a custom tokenizer; with them the engine
    does not have to guess the FIM tokens from their text.
    """
    import gguf

    path = Path(path)
    unknown = set(token_ids) - set(FIM_KEYS)
    if unknown:
        raise ExportError(f"Unknown FIM token role(s) {sorted(unknown)}; expected {sorted(FIM_KEYS)}.")
    try:
        reader = gguf.GGUFReader(path, "r")
    except (OSError, ValueError) as exc:
        raise ExportError(f"Could not read {path.name} as GGUF: {exc}") from exc

    tokens_field = reader.get_field(gguf.Keys.Tokenizer.LIST)
    n_tokens = len(tokens_field.data) if tokens_field else 0
    new_kv: dict[str, int] = {}
    for role, token_id in token_ids.items():
        if not 0 <= int(token_id) < n_tokens:
            raise ExportError(
                f"FIM {role} token id {token_id} is outside the vocabulary of {path.name} ({n_tokens})."
            )
        new_kv[getattr(gguf.Keys.Tokenizer, FIM_KEYS[role])] = int(token_id)

    arch_field = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    partial = _partial(path)
    writer = gguf.GGUFWriter(partial, arch=arch_field.contents(), endianess=reader.endianess)
    try:
        alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
        if alignment is not None:
            writer.data_alignment = alignment.contents()
        for field in reader.fields.values():
            # general.architecture is written by GGUFWriter itself; GGUF.* are the reader's virtual fields.
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue
            if field.name in new_kv:
                continue
            val_type = field.types[0]
            sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), val_type, sub_type=sub_type)
        for key, value in new_kv.items():
            writer.add_key_value(key, value, gguf.GGUFValueType.UINT32)
        for tensor in reader.tensors:
            writer.add_tensor_info(
                tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in reader.tensors:
            writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
        writer.close()
    except Exception:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    finally:
        del reader  # drop the memory map before the file is replaced
    atomic_file_replace(partial, path)
    logger.info("wrote %d FIM token ids into %s", len(new_kv), path.name)


def gguf_verify(path: Path, *, probe_text: str) -> dict:
    """Load the GGUF with llama.cpp, run `probe_text` through it, and check the logits are finite."""
    import llama_cpp
    import numpy as np

    path = Path(path)
    if not _is_gguf(path):
        raise ExportError(f"{path} is not a GGUF file.")
    started = time.monotonic()
    with _llama_log_captured() as lines:
        try:
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=512,
                verbose=False,
                **llama_threads(),
                logits_all=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ExportError(f"llama.cpp could not load {path.name}: {exc}\n{_log_tail(lines)}") from exc
    try:
        tokens = llm.tokenize(probe_text.encode("utf-8"), add_bos=True, special=False)[:512]
        if not tokens:
            raise ExportError(f"The probe text tokenized to nothing with {path.name}.")
        llm.eval(tokens)
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        if not np.isfinite(logits).all():
            raise ExportError(f"{path.name} loads, but produces non-finite logits.")
        result = {
            "loads": True,
            "n_vocab": llm.n_vocab(),
            "n_params": llama_cpp.llama_model_n_params(llm.model),
            "n_probe_tokens": len(tokens),
            "seconds": round(time.monotonic() - started, 3),
        }
    finally:
        llm.close()
    logger.info("verified %s: %s", path.name, result)
    return result
