"""Directory accounts: which users came from the directory (LDAP), and the periodic check that
deactivates those the directory no longer lists as staff.

Users made by the directory sign-in before this migration carry no record of it. When a directory is
configured, users with an unusable password (the directory sign-in sets one; a local account has a
password) are recorded as directory accounts, so they keep signing in. A superuser is left out unless
a superuser group is configured: then the directory decides that flag at every sign-in anyway, and
otherwise a passwordless local superuser must not become a directory user's to take.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

SCHEDULE = "hearth-directory-check"


def existing_directory_users_record(apps, schema_editor):
    if not getattr(settings, "HEARTH_LDAP_URI", ""):
        return
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    DirectoryAccount = apps.get_model("appliance", "DirectoryAccount")
    users = User.objects.filter(password__startswith="!")
    if not getattr(settings, "AUTH_LDAP_USER_FLAGS_BY_GROUP", {}).get("is_superuser"):
        users = users.filter(is_superuser=False)
    DirectoryAccount.objects.bulk_create([DirectoryAccount(user=user, dn="") for user in users])


def schedule_create(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=SCHEDULE,
        defaults={
            "func": "appliance.directory_tasks.directory_check_task",
            "schedule_type": "I",
            "minutes": 15,
            "repeats": -1,
        },
    )


def schedule_delete(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("appliance", "0004_notification_read_per_user"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.CreateModel(
            name="DirectoryAccount",
            fields=[
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="directory_account",
                        serialize=False,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "dn",
                    models.CharField(
                        help_text="The user's entry, as last found.", max_length=1024, verbose_name="DN"
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "checked_at",
                    models.DateTimeField(
                        blank=True,
                        help_text="When a sign-in or the periodic check last found the entry.",
                        null=True,
                    ),
                ),
                (
                    "suspended_at",
                    models.DateTimeField(
                        blank=True,
                        help_text="When Hearth deactivated the user because the directory no longer lists them "
                        "as staff (or at all); cleared, and the user active again, once it does.",
                        null=True,
                    ),
                ),
                ("suspended_reason", models.CharField(blank=True, max_length=200)),
            ],
        ),
        migrations.RunPython(existing_directory_users_record, migrations.RunPython.noop),
        migrations.RunPython(schedule_create, schedule_delete),
    ]
