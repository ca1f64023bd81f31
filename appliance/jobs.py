"""Enqueue django-q2 jobs after the surrounding transaction commits; tasks take primary keys.

Only Hearth's own jobs run. `JOB_FUNCTIONS` names every function Hearth enqueues or schedules, and
the worker process refuses any other before it imports or calls anything: a Schedule row typed into
the admin, a task resubmitted from the failed list, a queue entry from anywhere else. The refused
task fails like any failed job, with a sentence naming the function. django-q2 (1.11) has no hook that
can stop a task cleanly (`pre_execute` runs outside the worker's try, after the function's module is
imported), so `job_guard_install` hands django-q2 a worker loop that reads its task queue through
`_ListedJobs`; `pre_execute` raises as a second line, should a later django-q2 bypass that loop.
"""

from __future__ import annotations

import logging
import sys

from django.conf import settings
from django.db import transaction

from appliance.errors import HearthError

logger = logging.getLogger(__name__)

# Exact dotted names, not prefixes: a helper that happens to live in a tasks module is not a job.
# tests/appliance/test_jobs_allowlist.py checks that every function Hearth enqueues or schedules is here.
JOB_FUNCTIONS = frozenset(
    {
        "appliance.directory_tasks.directory_check_task",
        "inference.tasks.canary_check_task",
        "inference.tasks.telemetry_purge_task",
        "trainer.datasets.tasks.dataset_build_task",
        "trainer.datasets.tasks.dataset_execute_task",
        "trainer.mirrors.tasks.mirrors_sync_scheduled",
        "trainer.mirrors.tasks.repository_sync_task",
        "trainer.tasks.custom_model_prepare",
        "trainer.tasks.model_version_build",
        "trainer.tasks.retrain_if_changed",
        "trainer.tasks.stuck_rows_watchdog",
        "trainer.tasks.training_run_execute",
    }
)
# Jobs Hearth no longer runs: old migrations still name them, a later migration removes their
# schedules, and the worker refuses them like any unlisted function.
RETIRED_JOBS = frozenset({"trainer.training.tasks.training_watchdog"})  # migration trainer 0012
# Result hooks (django-q2 calls one with the task's row when the row is saved): Hearth uses none.
JOB_HOOKS: frozenset[str] = frozenset()


class JobRefused(HearthError):
    """A job names a function (or result hook) that is not one of Hearth's own."""


def _name(func) -> str:
    if isinstance(func, str):
        return func
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', type(func).__name__)}"


def job_refusal(task: dict) -> str:
    """Why a worker must not run `task` (a django-q2 task package), or '' when it may."""
    func = task.get("func")
    # Hearth queues its jobs by name; a function object arrives pickled, and names nothing checkable.
    if not isinstance(func, str) or func not in JOB_FUNCTIONS:
        return (
            f"Hearth refused to run {_name(func)!r}: it is not one of Hearth's own jobs, and the job queue "
            "runs nothing else (see appliance/jobs.py JOB_FUNCTIONS)."
        )
    hook = task.get("hook")
    if hook and (not isinstance(hook, str) or hook not in JOB_HOOKS):
        return (
            f"Hearth refused to run {func!r} with the result hook {_name(hook)!r}: Hearth's jobs have no "
            "result hooks."
        )
    return ""


def job_queue(*, gpu: bool = False) -> str:
    """The django-q2 queue (its "cluster" name) a job goes to: the GPU queue for GPU jobs when one is
    configured, else the default queue that every ordinary worker consumes."""
    if gpu and settings.HEARTH_GPU_QUEUE:
        return settings.HEARTH_GPU_QUEUE
    return settings.Q_CLUSTER["name"]


def job_enqueue(func: str, *args, group: str = "", gpu: bool = False) -> None:
    """Schedule `func` (a dotted path) once the current transaction commits. The queue is named
    explicitly: a job enqueued from inside a GPU worker must not land on that worker's own queue."""
    from django_q.tasks import async_task

    if func not in JOB_FUNCTIONS:  # the worker would refuse it; say so where the mistake is made
        raise JobRefused(f"{func!r} is not in appliance.jobs.JOB_FUNCTIONS: add it there to make it a job.")
    queue = job_queue(gpu=gpu)

    def _send() -> None:
        name = func.rsplit(".", 1)[-1]
        async_task(func, *args, group=group or name, task_name=f"{name}:{args}"[:100], cluster=queue)
        logger.info("enqueued %s%s on queue %s", func, args, queue)

    transaction.on_commit(_send)


# --- the worker side -----------------------------------------------------------------------------


class _ListedJobs:
    """A worker's task queue less the jobs Hearth does not run. Each of those goes straight to the
    result queue as a failed task (its hook dropped), so the monitor records and acknowledges it like
    any failure; the worker never sees it."""

    def __init__(self, tasks, results):
        self._tasks, self._results = tasks, results

    def get(self, *args, **kwargs):
        while True:
            task = self._tasks.get(*args, **kwargs)
            if not isinstance(task, dict):  # "STOP"
                return task
            why = job_refusal(task)
            if not why:
                return task
            job_refuse(task, why)
            self._results.put(task)

    def __getattr__(self, name):
        return getattr(self._tasks, name)


def job_refuse(task: dict, why: str) -> dict:
    """Mark a task package failed with `why`, as django-q2's worker marks a task that raised."""
    from django.utils import timezone

    logger.error("%s (task %s)", why, task.get("name") or task.get("id"))
    task.pop("timeout", None)
    task["hook"] = None
    task.update(result=why, success=False, stopped=timezone.now())
    return task


_worker_original = None


def job_worker(task_queue, result_queue, *args, **kwargs):
    """django-q2's worker loop, fed through `_ListedJobs` (installed by `job_guard_install`)."""
    return _worker_original(_ListedJobs(task_queue, result_queue), result_queue, *args, **kwargs)


def job_execute_check(sender, func=None, task=None, **kwargs) -> None:
    """`pre_execute` receiver, the second line: a task that reached execution unlisted stops here."""
    why = job_refusal(task or {})
    if why:
        logger.error("%s", why)
        raise JobRefused(why)


def job_hook_call(sender, instance, **kwargs) -> None:
    """django-q2's result-hook receiver, limited to `JOB_HOOKS`."""
    from django_q.signals import call_hook

    if instance.hook and instance.hook not in JOB_HOOKS:
        logger.error("Hearth refused the result hook %r of task %s", instance.hook, instance.name)
        return
    call_hook(sender, instance, **kwargs)


def job_guard_install() -> None:
    """Make every django-q2 worker in this process (the cluster's, and the in-process one of
    `sync` mode) refuse jobs that are not Hearth's. Idempotent; called from AppConfig.ready()."""
    global _worker_original
    from django.db.models.signals import post_save
    from django_q import worker as q_worker
    from django_q.models import Task
    from django_q.signals import call_hook, pre_execute

    if q_worker.worker is not job_worker:
        _worker_original = q_worker.worker
        q_worker.worker = job_worker  # django_q.cluster and django_q.tasks._sync import it by this name
    cluster = sys.modules.get("django_q.cluster")
    if cluster is not None:
        cluster.worker = job_worker
    pre_execute.connect(job_execute_check, dispatch_uid="hearth-job-execute-check")
    post_save.disconnect(call_hook, sender=Task)
    post_save.connect(job_hook_call, sender=Task, dispatch_uid="hearth-job-hook-call")
