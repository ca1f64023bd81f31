"""Pipeline rows, one file per stage."""

from trainer.models.basemodels import BaseModel
from trainer.models.datasets import Dataset, DatasetPolicy
from trainer.models.evaluation import EvaluationReport
from trainer.models.repositories import Repository
from trainer.models.training import ProgressPoint, TrainingRun
from trainer.models.versions import ModelVersion

__all__ = [
    "BaseModel",
    "Dataset",
    "DatasetPolicy",
    "EvaluationReport",
    "ModelVersion",
    "ProgressPoint",
    "Repository",
    "TrainingRun",
]
