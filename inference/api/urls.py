from django.urls import path

from inference.api import llamacpp, openai, openapi, tabby, telemetry

urlpatterns = [
    path("v1/completions", openai.completions, name="openai-completions"),
    path("v1/models", openai.models, name="openai-models"),
    path("infill", llamacpp.infill, name="llamacpp-infill"),
    path("completion", llamacpp.completion, name="llamacpp-completion"),
    path("v1/events", tabby.events, name="tabby-events"),
    path("v1/health", tabby.health, name="tabby-health"),
    path("v1/telemetry/snapshots", telemetry.snapshots, name="telemetry-snapshots"),
    path("ready", telemetry.ready, name="ready"),
    path("openapi.json", openapi.openapi_json, name="openapi"),
]
