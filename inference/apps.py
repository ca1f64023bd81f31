from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Serving"

    def ready(self) -> None:
        # The trainer may not import this package; it reads accepted completions through this provider.
        from inference.feedback import feedback_provider
        from trainer.datasets.accepted import accepted_provider_register

        accepted_provider_register(feedback_provider())
