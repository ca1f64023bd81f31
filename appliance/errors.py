"""One base exception for Hearth; each stage raises a subclass with a sentence an admin understands."""


class HearthError(Exception):
    """Base of every error Hearth raises on purpose."""


class InvalidTransition(HearthError):
    """A row was asked to move to a status its current status does not allow."""


class MirrorError(HearthError):
    """A repository could not be registered, mirrored or read."""


class DatasetError(HearthError):
    """A dataset could not be built from its repositories."""


class BaseModelError(HearthError):
    """A base model could not be fetched, imported or verified."""


class TrainingError(HearthError):
    """A training run failed."""


class EvaluationError(HearthError):
    """A model could not be evaluated."""


class ExportError(HearthError):
    """A model could not be converted, quantized or verified as GGUF."""


class EngineError(HearthError):
    """The inference engine could not load or run a model."""


class PipelineError(HearthError):
    """A stage of the pipeline ended without the model version it was meant to produce."""
