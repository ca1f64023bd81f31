from django.apps import AppConfig


class ApplianceConfig(AppConfig):
    name = "appliance"
    verbose_name = "Hearth appliance"

    def ready(self) -> None:
        from django.conf import settings

        # The instance root holds the SQLite database: it must exist before the first query.
        settings.HEARTH_HOME.mkdir(parents=True, exist_ok=True)
