"""The OpenAPI 3.1 document of the IDE-facing API, served at GET /openapi.json.

Written by hand next to the views it describes; a test checks every URL pattern is in it, and
schemathesis fuzzes the live API from it.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from inference.api.common import MAX_TOKENS_CAP

_ERROR = {"$ref": "#/components/schemas/Error"}
_STOP = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 16}]}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {
        400: "Invalid request: the message names the field",
        401: "Missing, unknown, expired or revoked token",
        403: "The token's user is disabled",
        413: "The prompt (with its suffix and context) or the body is over the size limit; the message names the field",
        429: "Per-token rate limit exceeded (see Retry-After)",
        503: "The engine is not running or has no model loaded",
    }
    return {str(c): _json(_ERROR, text[c]) for c in codes}


def _post(summary: str, body: dict, ok: dict, *, stream: bool = False, tag: str) -> dict:
    ok_response = _json(ok)
    if stream:
        ok_response["content"]["text/event-stream"] = {"schema": {"type": "string"}}
    return {
        "post": {
            "summary": summary,
            "tags": [tag],
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"200": ok_response, **_errors(400, 401, 403, 413, 429, 503)},
        }
    }


def _get(summary: str, ok: dict, *, tag: str, auth: bool = True, codes=(401, 403, 429, 503)) -> dict:
    op = {"summary": summary, "tags": [tag], "responses": {"200": _json(ok), **_errors(*codes)}}
    if auth:
        op["security"] = [{"bearer": []}]
    else:
        op["security"] = []
    return {"get": op}


SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["integer", "null"]},
                },
            }
        },
    },
    "OpenAICompletionRequest": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "model": {"type": "string", "description": "Ignored: the appliance serves one model."},
            "prompt": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1},
                ]
            },
            "suffix": {
                "type": ["string", "null"],
                "description": "Text after the cursor: fill in the middle.",
            },
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS_CAP, "default": 16},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1, "default": 1},
            "n": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
            "stop": _STOP,
            "stream": {"type": "boolean", "default": False},
            "echo": {"type": "boolean", "enum": [False]},
            "filepath": {"type": "string", "description": "Hearth extra: the file being edited (exclusion)."},
            "language": {"type": "string", "description": "Hearth extra: the file's language (telemetry)."},
        },
    },
    "OpenAICompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "text_completion"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "text", "finish_reason"],
                    "properties": {
                        "index": {"type": "integer"},
                        "text": {"type": "string"},
                        "logprobs": {"type": "null"},
                        "finish_reason": {"enum": ["stop", "length", "content_filter"]},
                    },
                },
            },
            "usage": {"type": "object"},
        },
    },
    "TabbyCompletionRequest": {
        "type": "object",
        "required": ["segments"],
        "properties": {
            "language": {"type": "string"},
            "segments": {
                "type": "object",
                "required": ["prefix"],
                "properties": {
                    "prefix": {"type": "string"},
                    "suffix": {"type": ["string", "null"]},
                    "filepath": {"type": ["string", "null"]},
                    "git_url": {"type": ["string", "null"]},
                    "declarations": {
                        "type": ["array", "null"],
                        "items": {"$ref": "#/components/schemas/Snippet"},
                    },
                    "relevant_snippets_from_changed_files": {
                        "type": ["array", "null"],
                        "items": {"$ref": "#/components/schemas/Snippet"},
                    },
                    "relevant_snippets_from_recently_opened_files": {
                        "type": ["array", "null"],
                        "items": {"$ref": "#/components/schemas/Snippet"},
                    },
                    "clipboard": {"type": ["string", "null"]},
                },
            },
            "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
            "seed": {"type": ["integer", "null"]},
            "user": {"type": ["string", "null"]},
        },
    },
    "Snippet": {
        "type": "object",
        "required": ["filepath", "body"],
        "properties": {
            "filepath": {"type": "string"},
            "body": {"type": "string"},
            "score": {"type": "number"},
        },
    },
    "TabbyCompletion": {
        "type": "object",
        "required": ["id", "choices"],
        "properties": {
            "id": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "text"],
                    "properties": {"index": {"type": "integer"}, "text": {"type": "string"}},
                },
            },
        },
    },
    "LlamaSampling": {
        "type": "object",
        "properties": {
            "n_predict": {
                "type": "integer",
                "minimum": -1,
                "maximum": MAX_TOKENS_CAP,
                "default": 128,
                "description": "-1: up to the cap; 0: only evaluate the prompt (cache warm-up).",
            },
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "top_k": {"type": "integer", "minimum": 0, "maximum": 1000000},
            "stop": _STOP,
            "stream": {"type": "boolean", "default": False},
            "cache_prompt": {"type": "boolean", "description": "Accepted; the prompt cache is always used."},
            "t_max_predict_ms": {"type": "number", "minimum": 0, "maximum": 600000},
            "filename": {"type": "string", "description": "Hearth extra: the file being edited (exclusion)."},
            "language": {"type": "string"},
        },
    },
    "InfillRequest": {
        "allOf": [
            {"$ref": "#/components/schemas/LlamaSampling"},
            {
                "type": "object",
                "properties": {
                    "input_prefix": {"type": "string"},
                    "input_suffix": {"type": "string"},
                    "prompt": {"type": "string"},
                    "input_extra": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["text"],
                            "properties": {"filename": {"type": "string"}, "text": {"type": "string"}},
                        },
                    },
                },
            },
        ]
    },
    "LlamaCompletionRequest": {
        "allOf": [
            {"$ref": "#/components/schemas/LlamaSampling"},
            {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "prompt": {
                        "oneOf": [
                            {"type": "string"},
                            {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1},
                        ]
                    }
                },
            },
        ]
    },
    "LlamaCompletion": {
        "type": "object",
        "required": ["content", "stop", "stop_type", "timings"],
        "properties": {
            "content": {"type": "string"},
            "model": {"type": "string"},
            "stop": {"type": "boolean"},
            "stop_type": {"enum": ["eos", "word", "limit", "none"]},
            "stopping_word": {"type": "string"},
            "tokens_predicted": {"type": "integer"},
            "tokens_evaluated": {"type": "integer"},
            "tokens_cached": {"type": "integer"},
            "truncated": {"type": "boolean"},
            "timings": {"type": "object"},
        },
    },
    "TabbyEvent": {
        "type": "object",
        "required": ["type", "completion_id"],
        "properties": {
            "type": {"enum": ["view", "select", "dismiss", "completion"]},
            "completion_id": {"type": "string", "minLength": 1},
            "choice_index": {"type": "integer", "minimum": 0, "maximum": 32},
            "view_id": {"type": "string"},
            "elapsed": {"type": "integer"},
            "select_kind": {"type": "string"},
        },
    },
    "Snapshot": {
        "type": "object",
        "required": ["completion_id", "text"],
        "properties": {
            "completion_id": {"type": "string", "minLength": 1},
            "text": {"type": "string", "maxLength": 100000},
            "filepath": {"type": "string"},
            "language": {"type": "string"},
            "elapsed_s": {"type": "integer", "minimum": 0, "maximum": 2592000},
        },
    },
}


def _paths() -> dict:
    """The API's operations: three dialects, Tabby's extras, and the operations endpoints."""
    return {
        "/v1/completions": _post(
            "OpenAI completion (prompt + optional suffix), or a Tabby completion when the body has segments",
            {
                "oneOf": [
                    {"$ref": "#/components/schemas/OpenAICompletionRequest"},
                    {"$ref": "#/components/schemas/TabbyCompletionRequest"},
                ]
            },
            {
                "oneOf": [
                    {"$ref": "#/components/schemas/OpenAICompletion"},
                    {"$ref": "#/components/schemas/TabbyCompletion"},
                ]
            },
            stream=True,
            tag="openai",
        ),
        "/v1/models": _get(
            "The served model",
            {
                "type": "object",
                "required": ["object", "data"],
                "properties": {"object": {"const": "list"}, "data": {"type": "array"}},
            },
            tag="openai",
        ),
        "/infill": _post(
            "llama.cpp fill-in-the-middle (llama.vscode)",
            {"$ref": "#/components/schemas/InfillRequest"},
            {"$ref": "#/components/schemas/LlamaCompletion"},
            stream=True,
            tag="llama.cpp",
        ),
        "/completion": _post(
            "llama.cpp completion (Continue)",
            {"$ref": "#/components/schemas/LlamaCompletionRequest"},
            {"$ref": "#/components/schemas/LlamaCompletion"},
            stream=True,
            tag="llama.cpp",
        ),
        "/v1/events": _post(
            "Tabby view / select / dismiss event",
            {"$ref": "#/components/schemas/TabbyEvent"},
            {"type": "object"},
            tag="tabby",
        ),
        "/v1/health": _get("Tabby server health", {"type": "object", "required": ["model"]}, tag="tabby"),
        "/v1/telemetry/snapshots": _post(
            "Accepted-code snapshot (stored only when the telemetry policy allows content)",
            {"$ref": "#/components/schemas/Snapshot"},
            {"type": "object", "required": ["stored"], "properties": {"stored": {"type": "boolean"}}},
            tag="telemetry",
        ),
        "/ready": _get(
            "Readiness: 200 once a model is served",
            {"type": "object", "required": ["ready"]},
            tag="operations",
            auth=False,
            codes=(503,),
        ),
        "/openapi.json": _get(
            "This document",
            {"type": "object", "required": ["openapi", "paths"]},
            tag="operations",
            auth=False,
            codes=(),
        ),
    }


def openapi_document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hearth IDE API",
            "version": "1",
            "description": "Code completion for IDE extensions: OpenAI completions, llama.cpp's /infill "
            "and /completion, and Tabby's API, on the appliance's own model.",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": _paths(),
    }


@require_GET
def openapi_json(request: HttpRequest):
    return JsonResponse(openapi_document())
