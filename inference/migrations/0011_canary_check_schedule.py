"""The canary's check: every five minutes, tell the admins once a running canary's live comparison
becomes significant."""

from django.db import migrations


def schedule_create(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name="hearth-canary-check",
        defaults={
            "func": "inference.tasks.canary_check_task",
            "schedule_type": "I",
            "minutes": 5,
            "repeats": -1,
        },
    )


def schedule_delete(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="hearth-canary-check").delete()


class Migration(migrations.Migration):
    dependencies = [("inference", "0010_completion_filepath_arm")]

    operations = [migrations.RunPython(schedule_create, schedule_delete)]
