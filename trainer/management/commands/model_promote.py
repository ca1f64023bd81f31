from trainer.management.version_command import VersionCommand


class Command(VersionCommand):
    action = "promote"
    help = "Serve a model version (a candidate, or a retired one to roll back); the served one is retired."
