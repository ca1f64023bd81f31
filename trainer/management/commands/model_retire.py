from trainer.management.version_command import VersionCommand


class Command(VersionCommand):
    action = "retire"
    help = "Stop serving a model version; the base model is served instead."
