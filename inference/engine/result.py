"""The engine's answer to one `EngineRequest`, typed on both sides of the wire.

The engine builds an `EngineResult` and sends `to_dict()`; the web tier rebuilds it with
`from_dict()`, which checks every field, so a malformed reply (a bug, or something else listening on
the engine's port) is an `EngineReplyError` naming the field at fault, not a KeyError in whichever
dialect reads it first. A streamed answer is `StreamDelta` lines, then one `StreamDone` carrying the
result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from appliance.errors import EngineError

# Why the engine stopped a choice. The dialects add their own (content_filter when a filter cut it).
FINISH_REASONS = frozenset({"stop", "length", "cancelled"})


class EngineReplyError(EngineError):
    """The engine answered something that is not a well-formed result; `field` names the part at fault."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(f"The engine's reply is malformed: {message}")
        self.field = field


@dataclass(frozen=True)
class Timings:
    """How long one completion took, in llama.cpp server's own timing fields."""

    prompt_n: int = 0  # prompt tokens evaluated (those not already in the slot's cache)
    prompt_ms: float = 0
    predicted_n: int = 0  # tokens generated
    predicted_ms: float = 0

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: object, where: str = "timings") -> Timings:
        data = _object(data, where, {f.name for f in fields(cls)})
        return cls(
            prompt_n=_count(data, "prompt_n", where),
            prompt_ms=_number(data, "prompt_ms", where),
            predicted_n=_count(data, "predicted_n", where),
            predicted_ms=_number(data, "predicted_ms", where),
        )


@dataclass(frozen=True)
class EngineChoice:
    """One of the request's `n` completions."""

    index: int
    text: str
    finish_reason: str  # stop | length | cancelled (superseded: the newer request answers)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the slot's cache already held
    timings: Timings = field(default_factory=Timings)
    stop_word: str = ""  # the stop string that ended it, if one did

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "text": self.text,
            "finish_reason": self.finish_reason,
            "timings": self.timings.to_dict(),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "stop_word": self.stop_word,
        }

    @classmethod
    def from_dict(cls, data: object, where: str = "choice") -> EngineChoice:
        data = _object(data, where, {f.name for f in fields(cls)})
        index, text, finish = (
            _count(data, "index", where),
            _text(data, "text", where),
            _text(data, "finish_reason", where),
        )
        if finish not in FINISH_REASONS:
            raise EngineReplyError(
                f"'{where}.finish_reason' must be one of {', '.join(sorted(FINISH_REASONS))}.",
                field=f"{where}.finish_reason",
            )
        return cls(
            index=index,
            text=text,
            finish_reason=finish,
            prompt_tokens=_count(data, "prompt_tokens", where),
            completion_tokens=_count(data, "completion_tokens", where),
            cached_tokens=_count(data, "cached_tokens", where),
            timings=Timings.from_dict(_present(data, "timings", where), f"{where}.timings"),
            stop_word=_text(data, "stop_word", where),
        )


@dataclass(frozen=True)
class EngineResult:
    """What the engine answers to one request: its choices, and which model on which slot made them."""

    choices: tuple[EngineChoice, ...]
    superseded: bool = False  # a newer request from the same user cancelled this one
    model: str = ""  # the served model's id
    version: int | None = None  # its ModelVersion; None for a base model
    slot: int | None = None  # the slot that ran it; None when it was answered without running
    can_infill: bool | None = None  # whether the model has fill-in-the-middle tokens
    context_dropped: int = 0  # retrieved snippets dropped because they were chosen for another model

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices:
            raise EngineReplyError("'choices' must hold at least one choice.", field="choices")

    @classmethod
    def cancelled(cls, *, model: str = "", version: int | None = None) -> EngineResult:
        """The answer to a request superseded before it ran: no text, the newer request answers."""
        return cls(choices=(EngineChoice(0, "", "cancelled"),), superseded=True, model=model, version=version)

    def to_dict(self) -> dict:
        return {
            "choices": [c.to_dict() for c in self.choices],
            "superseded": self.superseded,
            "model": self.model,
            "version": self.version,
            "slot": self.slot,
            "can_infill": self.can_infill,
            "context_dropped": self.context_dropped,
        }

    @classmethod
    def from_dict(cls, data: object, where: str = "") -> EngineResult:
        """Rebuild a result from its JSON form, checking every field (raises EngineReplyError)."""
        data = _object(data, where or "result", {f.name for f in fields(cls)})
        prefix = f"{where}." if where else ""
        choices = _present(data, "choices", where)
        if not isinstance(choices, list) or not choices:
            raise EngineReplyError(f"'{prefix}choices' must be a non-empty list.", field=f"{prefix}choices")
        superseded = _present(data, "superseded", where)
        if not isinstance(superseded, bool):
            raise EngineReplyError(
                f"'{prefix}superseded' must be true or false.", field=f"{prefix}superseded"
            )
        can_infill = _present(data, "can_infill", where)
        if can_infill is not None and not isinstance(can_infill, bool):
            raise EngineReplyError(
                f"'{prefix}can_infill' must be true, false or null.", field=f"{prefix}can_infill"
            )
        return cls(
            choices=tuple(EngineChoice.from_dict(c, f"{prefix}choices[{i}]") for i, c in enumerate(choices)),
            superseded=superseded,
            model=_text(data, "model", where),
            version=_count(data, "version", where, nullable=True),
            slot=_count(data, "slot", where, nullable=True),
            can_infill=can_infill,
            context_dropped=_count(data, "context_dropped", where),
        )


@dataclass(frozen=True)
class StreamDelta:
    """A piece of the first choice's text, as it is generated."""

    text: str

    def to_dict(self) -> dict:
        return {"delta": self.text}


@dataclass(frozen=True)
class StreamDone:
    """The end of a stream: the result, whose first choice's text is authoritative (stop strings are
    cut after generation, so it can be shorter than what the deltas carried)."""

    result: EngineResult
    streamed: str  # what the deltas carried

    @property
    def final(self) -> str:
        return self.result.choices[0].text

    def to_dict(self) -> dict:
        return {"done": True, "result": self.result.to_dict(), "streamed": self.streamed}


def stream_message_from_dict(data: object) -> StreamDelta | StreamDone:
    """One line of the engine's stream; an engine error on the line is raised as an EngineError."""
    if isinstance(data, dict) and set(data) == {"delta"} and isinstance(data["delta"], str):
        return StreamDelta(data["delta"])
    if isinstance(data, dict) and set(data) == {"error"} and isinstance(data["error"], str):
        raise EngineError(data["error"])
    data = _object(data, "stream line", {"done", "result", "streamed"})
    if _present(data, "done", "") is not True:
        raise EngineReplyError("a stream line must be a delta, an error or the end.", field="done")
    return StreamDone(
        result=EngineResult.from_dict(_present(data, "result", ""), "result"),
        streamed=_text(data, "streamed", ""),
    )


# ------------------------------------------------------------ checking the JSON form


def _object(data: object, where: str, known: set[str]) -> dict:
    if not isinstance(data, dict):
        raise EngineReplyError(f"'{where}' must be a JSON object.", field=where)
    unknown = set(data) - known
    if unknown:
        raise EngineReplyError(f"'{where}' has an unknown field {min(unknown)!r}.", field=where)
    return data


def _present(data: dict, name: str, where: str) -> object:
    path = f"{where}.{name}" if where else name
    if name not in data:
        raise EngineReplyError(f"'{path}' is missing.", field=path)
    return data[name]


def _text(data: dict, name: str, where: str) -> str:
    value = _present(data, name, where)
    if not isinstance(value, str):
        path = f"{where}.{name}" if where else name
        raise EngineReplyError(f"'{path}' must be a string.", field=path)
    return value


def _count(data: dict, name: str, where: str, *, nullable: bool = False) -> int | None:
    value = _present(data, name, where)
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        path = f"{where}.{name}" if where else name
        must = "a whole number of 0 or more" + (" or null" if nullable else "")
        raise EngineReplyError(f"'{path}' must be {must}.", field=path)
    return value


def _number(data: dict, name: str, where: str) -> float:
    value = _present(data, name, where)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        path = f"{where}.{name}" if where else name
        raise EngineReplyError(f"'{path}' must be a finite number of 0 or more.", field=path)
    return value  # an int stays an int: the dialects answer it as the engine sent it
