from django.apps import AppConfig


class ApplianceConfig(AppConfig):
    name = "appliance"
    verbose_name = "Hearth appliance"

    def ready(self) -> None:
        from django.conf import settings

        # The instance root holds the SQLite database: it must exist before the first query.
        settings.HEARTH_HOME.mkdir(parents=True, exist_ok=True)

        from django.contrib.auth.signals import user_login_failed

        from appliance.audit import login_failed_record

        user_login_failed.connect(login_failed_record, dispatch_uid="hearth-audit-login-failed")
