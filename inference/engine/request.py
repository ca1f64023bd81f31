"""The one request that crosses from the web tier to the engine, validated on both sides.

The gateway builds an `EngineRequest` from whichever dialect the IDE spoke and sends `to_json()`;
the engine rebuilds it with `from_json()`, which trusts nothing in the body (a request that did not
come through the gateway is refused by the engine's shared secret first, but a bug must not become a
crash either). The sampling part is the same `SamplingOptions` that evaluation decodes with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from appliance.errors import HearthError
from appliance.llm.sampling import SamplingError, SamplingOptions

MAX_TOKENS_CAP = 1024
MAX_CHOICES = 4
# Characters of prompt material (prefix + suffix + context snippets) one request may carry. Far more
# than any window holds (the prompt builder keeps the text nearest the cursor): anything bigger is a
# client bug or an attack, answered 413 at the gateway.
MAX_PROMPT_CHARS = 262_144
MAX_CONTEXT_ITEMS = 32
MAX_STOPS = 16

# How each SamplingOptions field travels as JSON: the kind it must have, and whether null is allowed.
_SAMPLING_WIRE: dict[str, tuple[type, bool]] = {
    "max_tokens": (int, False),
    "temperature": (float, False),
    "top_p": (float, False),
    "stop": (list, False),
    "single_line": (bool, False),
    "max_lines": (int, False),
    "max_prompt_tokens": (int, True),
    "max_suffix_tokens": (int, False),
    "deadline_s": (float, True),
    "trim_lines": (bool, False),
}


class EngineRequestError(HearthError):
    """A request for the engine is malformed; `field` names the part at fault."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.field, self.status = field, status


def prompt_chars(prefix: str, suffix: str | None, context) -> int:
    """The characters of prompt material a request carries (what `MAX_PROMPT_CHARS` limits)."""
    return len(prefix) + len(suffix or "") + sum(len(p) + len(t) for p, t in context)


@dataclass(frozen=True)
class EngineRequest:
    """One completion job: whose it is (supersession and cache affinity), what to complete, how."""

    user: str
    prefix: str
    suffix: str | None = None
    context: tuple[tuple[str, str], ...] = ()
    filepath: str = ""
    # The first `retrieved` context items are repository snippets the gateway chose for version
    # `retrieved_for`; an engine serving anything else (a version that failed to load, so the base;
    # another replica mid-roll) drops them and keeps only what the client sent.
    retrieved: int = 0
    retrieved_for: int | None = None
    n: int = 1
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    stream: bool = False
    # The gateway put this user in the canary's share: an engine serving a canary answers with it;
    # one that is not (the canary ended, or has not loaded yet) answers with the served model.
    canary: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "context", tuple((str(p), str(t)) for p, t in self.context))
        if not isinstance(self.user, str) or not self.user:
            raise EngineRequestError("'user' must be a non-empty string.", field="user")
        if not isinstance(self.prefix, str):
            raise EngineRequestError("'prefix' must be a string.", field="prefix")
        if self.suffix is not None and not isinstance(self.suffix, str):
            raise EngineRequestError("'suffix' must be a string or null.", field="suffix")
        if not isinstance(self.filepath, str):
            raise EngineRequestError("'filepath' must be a string.", field="filepath")
        if _not_int(self.n) or not 1 <= self.n <= MAX_CHOICES:
            raise EngineRequestError(f"'n' must be an integer from 1 to {MAX_CHOICES}.", field="n")
        if len(self.context) > MAX_CONTEXT_ITEMS:
            raise EngineRequestError(
                f"'context' holds at most {MAX_CONTEXT_ITEMS} snippets.", field="context"
            )
        if _not_int(self.retrieved) or not 0 <= self.retrieved <= len(self.context):
            raise EngineRequestError(
                "'retrieved' must be an integer from 0 to the number of context items.", field="retrieved"
            )
        if self.retrieved_for is not None and _not_int(self.retrieved_for):
            raise EngineRequestError("'retrieved_for' must be an integer or null.", field="retrieved_for")
        if prompt_chars(self.prefix, self.suffix, self.context) > MAX_PROMPT_CHARS:
            raise EngineRequestError(
                f"The prompt is longer than {MAX_PROMPT_CHARS} characters.", field="prefix", status=413
            )
        if not isinstance(self.sampling, SamplingOptions):
            raise EngineRequestError("'sampling' must be sampling options.", field="sampling")
        if not isinstance(self.canary, bool):
            raise EngineRequestError("'canary' must be true or false.", field="canary")
        if self.sampling.max_tokens > MAX_TOKENS_CAP:
            raise EngineRequestError(f"'max_tokens' must be at most {MAX_TOKENS_CAP}.", field="max_tokens")
        if len(self.sampling.stop) > MAX_STOPS:
            raise EngineRequestError(f"'stop' holds at most {MAX_STOPS} strings.", field="stop")

    def served_by(self, version_pk: int | None) -> tuple[EngineRequest, int]:
        """This request as the model `version_pk` (None: the base) should run it, and how many
        retrieved snippets were dropped because they were chosen for another model."""
        if not self.retrieved or self.retrieved_for == version_pk:
            return self, 0
        kept = replace(self, context=self.context[self.retrieved :], retrieved=0, retrieved_for=None)
        return kept, self.retrieved

    def to_json(self) -> dict:
        sampling = {name: getattr(self.sampling, name) for name in _SAMPLING_WIRE}
        sampling["stop"] = list(self.sampling.stop)
        return {
            "user": self.user,
            "prefix": self.prefix,
            "suffix": self.suffix,
            "context": [list(pair) for pair in self.context],
            "filepath": self.filepath,
            "retrieved": self.retrieved,
            "retrieved_for": self.retrieved_for,
            "n": self.n,
            "sampling": sampling,
            "stream": self.stream,
            "canary": self.canary,
        }

    @classmethod
    def from_json(cls, body: object) -> EngineRequest:
        """Rebuild a request from its JSON form, checking every type (raises EngineRequestError)."""
        if not isinstance(body, dict):
            raise EngineRequestError("The request must be a JSON object.")
        known = {"user", "prefix", "suffix", "context", "filepath", "retrieved", "retrieved_for", "n"}
        unknown = set(body) - known - {"sampling", "stream", "canary"}
        if unknown:
            raise EngineRequestError(f"Unknown field {min(unknown)!r}.", field=min(unknown))
        context = body.get("context") or []
        if not isinstance(context, list) or not all(
            isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in context
        ):
            raise EngineRequestError("'context' must be a list of [path, text] pairs.", field="context")
        if not isinstance(body.get("stream", False), bool):
            raise EngineRequestError("'stream' must be true or false.", field="stream")
        return cls(
            user=body.get("user"),
            prefix=body.get("prefix", ""),
            suffix=body.get("suffix"),
            context=tuple((p, t) for p, t in context),
            filepath=body.get("filepath", ""),
            retrieved=body.get("retrieved", 0),
            retrieved_for=body.get("retrieved_for"),
            n=body.get("n", 1),
            sampling=sampling_from_json(body.get("sampling", {})),
            stream=body.get("stream", False),
            canary=body.get("canary", False),
        )


def sampling_from_json(data: object) -> SamplingOptions:
    """SamplingOptions from their JSON form: each field of the kind it must have, all finite."""
    if not isinstance(data, dict):
        raise EngineRequestError("'sampling' must be an object.", field="sampling")
    values = {}
    for name, value in data.items():
        if name not in _SAMPLING_WIRE:
            raise EngineRequestError(f"Unknown sampling option {name!r}.", field=name)
        kind, nullable = _SAMPLING_WIRE[name]
        if value is None and nullable:
            values[name] = None
        elif kind is int and not _not_int(value):
            values[name] = value
        elif kind is float and _finite_number(value):
            values[name] = float(value)
        elif kind is bool and isinstance(value, bool):
            values[name] = value
        elif kind is list and isinstance(value, list) and all(isinstance(s, str) for s in value):
            values[name] = tuple(value)
        else:
            raise EngineRequestError(f"'{name}' has the wrong type or is not finite.", field=name)
    try:
        return SamplingOptions(**values)
    except SamplingError as exc:
        raise EngineRequestError(str(exc), field=exc.fields[0] if exc.fields else None) from None


def _not_int(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def _finite_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
