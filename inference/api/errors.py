"""JSON errors in the OpenAI shape, so every client can show the message."""

from __future__ import annotations

from django.http import JsonResponse


def error_response(
    status: int, message: str, *, kind: str = "invalid_request_error", param: str | None = None
):
    return JsonResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": status}}, status=status
    )


class RequestError(Exception):
    def __init__(self, message: str, *, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status
