from django.apps import AppConfig


class ApplianceConfig(AppConfig):
    name = "appliance"
    verbose_name = "Hearth appliance"

    def ready(self) -> None:
        from django.conf import settings

        from appliance import checks  # noqa: F401  (registers the system checks)
        from appliance.instance import home_prepare

        _cpu_set_apply()

        # The instance root holds the SQLite database: it must exist (private) before the first query.
        home_prepare(settings.HEARTH_HOME)
        if settings.HEARTH_NETWORK_GUARD:
            from appliance.netguard import guard_install, policy_from_settings

            guard_install(policy_from_settings(settings))

        from appliance.jobs import job_guard_install

        job_guard_install()  # the job queue runs Hearth's own functions and nothing else

        from django.contrib.auth.signals import user_login_failed

        from appliance.audit import login_failed_record

        user_login_failed.connect(login_failed_record, dispatch_uid="hearth-audit-login-failed")


def _cpu_set_apply() -> None:
    """The engine and the job worker pin themselves to their own cores (appliance/cpusets.py), before
    any thread pool starts."""
    import logging
    import sys

    from appliance.cpusets import cpu_affinity_apply, engine_openmp_tune

    role = "engine" if "inference_serve" in sys.argv else "worker" if "qcluster" in sys.argv else ""
    if role == "engine":
        engine_openmp_tune()
    if role:
        cpus = cpu_affinity_apply(role)
        if cpus:
            logging.getLogger("appliance").info(
                "%s pinned to CPUs %s", role, ",".join(map(str, sorted(cpus)))
            )
