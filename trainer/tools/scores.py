"""A typed view of an evaluation report's metrics, so no reader digs through key paths."""

from __future__ import annotations

from dataclasses import dataclass, field

# The paired arms of an evaluation: each model with and without repository context. "tuned" is the
# candidate; "served" the version served while the candidate was scored, when there was one.
ARMS = ("base", "base+context", "tuned", "tuned+context", "served", "served+context")
_ARM_MODEL = {"base": "base", "tuned": "candidate", "served": "served"}


@dataclass(frozen=True)
class LineScore:
    """One model's line-completion score in one mode on a set of held-out tasks."""

    mode: str
    tasks: int
    exact_match: float
    exact_match_ci95: tuple[float, float]
    edit_similarity: float
    by_language: dict = field(default_factory=dict)
    examples: list = field(default_factory=list)
    hits: tuple[int, ...] = ()  # per task, 1 for an exact match, in task order (paired comparisons)

    @classmethod
    def from_dict(cls, data: dict) -> LineScore:
        lo, hi = data.get("exact_match_ci95", (0.0, 0.0))
        return cls(
            mode=data.get("mode", ""),
            tasks=int(data.get("tasks", 0)),
            exact_match=float(data.get("exact_match", 0.0)),
            exact_match_ci95=(float(lo), float(hi)),
            edit_similarity=float(data.get("edit_similarity", 0.0)),
            by_language=data.get("by_language", {}),
            examples=data.get("examples", []),
            hits=tuple(int(h) for h in data.get("hits", ())),
        )


@dataclass(frozen=True)
class ModelScores:
    """Everything one model (an arm) scored: line completion per mode, and held-out perplexity."""

    label: str
    lines: dict[str, LineScore]
    perplexity: float | None
    can_infill: bool = False

    @classmethod
    def from_dict(cls, label: str, data: dict) -> ModelScores:
        ppl = (data.get("perplexity") or {}).get("perplexity")
        return cls(
            label=label,
            lines={
                mode: LineScore.from_dict({"mode": mode, **score})
                for mode, score in (data.get("line_completion") or {}).items()
            },
            perplexity=float(ppl) if ppl is not None else None,
            can_infill=bool(data.get("can_infill")),
        )


@dataclass(frozen=True)
class GeneralScores:
    """The general-code arms: the base and the candidate on held-out lines of code the customer did not
    write (the standard library), to see whether fine-tuning forgot general code."""

    source: str  # "the Python 3.11 standard library"
    files: int
    lines: dict[str, LineScore]  # by report label: "base", "candidate"

    @classmethod
    def from_dict(cls, data: dict) -> GeneralScores:
        mode = data.get("mode", "")
        return cls(
            source=data.get("source", "general code"),
            files=int(data.get("files", 0)),
            lines={
                label: LineScore.from_dict({"mode": mode, **score})
                for label, score in (data.get("models") or {}).items()
            },
        )

    def arm(self, name: str) -> LineScore:
        """ "base" or "tuned" (the arms "general:base" and "general:tuned")."""
        return self.lines[_ARM_MODEL[name]]

    def has_arm(self, name: str) -> bool:
        return name in _ARM_MODEL and _ARM_MODEL[name] in self.lines

    def paired(self) -> bool:
        """Both arms scored, line by line, on the same lines."""
        if not (self.has_arm("base") and self.has_arm("tuned")):
            return False
        base, tuned = self.arm("base").hits, self.arm("tuned").hits
        return bool(tuned) and len(tuned) == len(base)

    @property
    def change(self) -> float:
        """The candidate's exact match on general code minus the base's (negative: it forgot)."""
        return self.arm("tuned").exact_match - self.arm("base").exact_match


@dataclass(frozen=True)
class Scores:
    """The report's metrics: the common mode, each model's scores by label, and the general-code arms
    when they were scored."""

    mode: str
    tasks: int
    models: dict[str, ModelScores]
    general: GeneralScores | None = None

    @classmethod
    def from_metrics(cls, metrics: dict) -> Scores:
        return cls(
            mode=metrics.get("mode", "prefix"),
            tasks=int(metrics.get("tasks", 0)),
            models={
                label: ModelScores.from_dict(label, m) for label, m in (metrics.get("models") or {}).items()
            },
            general=GeneralScores.from_dict(metrics["general"]) if metrics.get("general") else None,
        )

    @property
    def labels(self) -> list[str]:
        return list(self.models)

    def headline(self, label: str, mode: str | None = None) -> LineScore:
        """`label`'s score in `mode` (default: the common mode every model was scored in)."""
        try:
            return self.models[label].lines[mode or self.mode]
        except KeyError as exc:
            raise KeyError(f"the report has no {mode or self.mode!r} score for {label!r}") from exc

    def has(self, label: str, mode: str | None = None) -> bool:
        return label in self.models and (mode or self.mode) in self.models[label].lines

    def arm(self, arm: str) -> LineScore:
        """An arm's score: "tuned+context" is the candidate's in the common mode with context."""
        name, _, context = arm.partition("+")
        return self.headline(_ARM_MODEL[name], self.mode + ("+context" if context else ""))

    def has_arm(self, arm: str) -> bool:
        name, _, context = arm.partition("+")
        return name in _ARM_MODEL and self.has(_ARM_MODEL[name], self.mode + ("+context" if context else ""))

    @property
    def arms(self) -> dict[str, LineScore]:
        return {arm: self.arm(arm) for arm in ARMS if self.has_arm(arm)}

    def best_arm(self, name: str) -> str:
        """`name` ("tuned", "base") with context when that scored strictly better, else without."""
        with_context = f"{name}+context"
        if self.has_arm(with_context) and self.arm(with_context).exact_match > self.arm(name).exact_match:
            return with_context
        return name

    def arm_summary(self, arm: str) -> dict:
        """What the demo's JSON line and the report page show of one arm."""
        score = self.arm(arm)
        model = self.models[_ARM_MODEL[arm.partition("+")[0]]]
        return {
            "exact_match": round(score.exact_match, 4),
            "exact_match_ci95": list(score.exact_match_ci95),
            "edit_similarity": round(score.edit_similarity, 4),
            # Perplexity is of the held-out files alone: it applies to the arms without context.
            "perplexity": round(model.perplexity, 3)
            if model.perplexity is not None and "+" not in arm
            else None,
            "tasks": score.tasks,
            "by_language": score.by_language,
        }
