"""django-q2 entry points for datasets: plain functions taking primary keys."""

from __future__ import annotations


def dataset_build_task(repo_pks: list[int]) -> str:
    from appliance.errors import DatasetError
    from trainer.datasets.services import dataset_build
    from trainer.models import Repository

    repos = list(Repository.objects.filter(pk__in=repo_pks))
    try:
        dataset = dataset_build(repositories=repos)
    except DatasetError as exc:  # recorded on the row (when one was created)
        return f"failed: {exc}"
    return f"dataset {dataset.pk} ready"


def dataset_execute_task(dataset_pk: int) -> str:
    """Build an existing pending dataset (a retried one)."""
    from appliance.errors import DatasetError
    from trainer.datasets.services import dataset_execute
    from trainer.models import Dataset

    try:
        dataset = dataset_execute(dataset=Dataset.objects.get(pk=dataset_pk))
    except DatasetError as exc:
        return f"failed: {exc}"
    return f"dataset {dataset.pk} ready"
