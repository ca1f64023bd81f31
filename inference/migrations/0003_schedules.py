"""Serving's recurring job: the daily telemetry purge that enforces the retention window."""

from django.db import migrations


def schedules_create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="hearth-telemetry-purge",
        defaults={"func": "inference.tasks.telemetry_purge_task", "schedule_type": "D", "repeats": -1},
    )


def schedules_delete(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="hearth-telemetry-purge").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0002_serving"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedules_create, schedules_delete)]
