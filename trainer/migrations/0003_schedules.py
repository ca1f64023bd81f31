"""The pipeline's recurring jobs: the training watchdog (requeues runs whose worker died) and the
optional retrain when mirrors have new commits."""

from django.db import migrations

SCHEDULES = {
    # name: (function, minutes between runs)
    "hearth-training-watchdog": ("trainer.training.tasks.training_watchdog", 1),
    "hearth-retrain-if-changed": ("trainer.tasks.retrain_if_changed", 60),
}


def schedules_create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, (func, minutes) in SCHEDULES.items():
        Schedule.objects.update_or_create(
            name=name, defaults={"func": func, "schedule_type": "I", "minutes": minutes, "repeats": -1}
        )


def schedules_delete(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=SCHEDULES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("trainer", "0002_run_worker_pid"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedules_create, schedules_delete)]
