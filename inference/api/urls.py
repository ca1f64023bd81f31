from django.urls import path

from inference.api import openai

urlpatterns = [
    path("v1/completions", openai.completions, name="openai-completions"),
    path("v1/models", openai.models, name="openai-models"),
]
