import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")
application = get_wsgi_application()

# The response filter's provider rules take about a second to read and compile: pay it when a
# worker starts, not on its first completion.
from appliance.secret_rules import rule_set

rule_set()
