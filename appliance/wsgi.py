import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")
application = get_wsgi_application()

# The response filter's provider rules take about a second to read and compile: pay it when a
# worker starts, not on its first completion.
from appliance.secret_rules import rule_set

rule_set()


def front_application(environ, start_response):
    """The application behind Hearth's front (appliance.proxy): the client's address and scheme are
    the ones the front saw, in fields it always sets (a client's own are dropped on the way)."""
    peer = environ.pop("HTTP_X_HEARTH_PEER", "")
    scheme = environ.pop("HTTP_X_HEARTH_SCHEME", "")
    if peer:
        environ["REMOTE_ADDR"] = peer
        environ.pop("REMOTE_PORT", None)
    if scheme in ("http", "https"):
        environ["wsgi.url_scheme"] = scheme
    return application(environ, start_response)
