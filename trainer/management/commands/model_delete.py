from trainer.management.version_command import VersionCommand


class Command(VersionCommand):
    action = "delete"
    help = "Delete a model version and its files; if it was served, the base model is served instead."
