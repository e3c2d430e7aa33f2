"""`GET /openapi.json`: one OpenAPI 3.1 document of both APIs, generated from the route
tables the server dispatches with (every route carries its `Doc`), so the document cannot
drift from what is served."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from hopper._engine import __version__
from hopper.server.http import Request, Response
from hopper.server.jobserver_schemas import COMPONENTS as JOB_SERVER_COMPONENTS
from hopper.server.management.schemas import COMPONENTS as MANAGEMENT_COMPONENTS
from hopper.server.router import Auth, Doc, Route, Router

if TYPE_CHECKING:
    from hopper.server.management.api import Management

OPERATION_ID = str.maketrans({"/": "_", "{": "", "}": ""})
ERROR_TEXT = {
    400: "Bad request",
    401: "Missing or wrong bearer token",
    403: "Read-only mode",
    404: "Not found",
    413: "Body too large",
    429: "Rate limit exceeded",
    503: "Storage unavailable",
}


def _path(prefix: str, route: Route) -> str:
    segments = [f"{{{s[1:]}}}" if s.startswith(":") else s for s in route.template]
    return prefix + "/" + "/".join(segments)


def _operation(route: Route, doc: Doc, path: str, error_schema: str) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {
            "name": s[1:],
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
        }
        for s in route.template
        if s.startswith(":")
    ]
    params += [
        {"name": p.name, "in": "query", "required": p.required, "schema": p.schema}
        | ({"description": p.description} if p.description else {})
        for p in doc.query
    ]
    schema = doc.response if doc.response is not None else {}
    if doc.content_type != "application/json":
        schema = {"type": "string"}
    responses: dict[str, Any] = {
        str(doc.status): {
            "description": doc.description or doc.summary,
            "content": {doc.content_type: {"schema": schema}},
        }
    }
    # A route that reads a body answers 413 past the body limit (HOPPER_MAX_BODY_BYTES).
    errors = sorted({*doc.errors, 413}) if doc.body is not None else doc.errors
    for status in errors:
        responses[str(status)] = {
            "description": ERROR_TEXT.get(status, "Error"),
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{error_schema}"}}
            },
        }
    op: dict[str, Any] = {
        "summary": doc.summary,
        "tags": [doc.tag],
        "operationId": route.method.lower() + path.translate(OPERATION_ID),
        "parameters": params,
        "responses": responses,
        "security": [{"bearer": []}] if route.auth is Auth.REQUIRED else [],
    }
    if doc.description:
        op["description"] = doc.description
    if doc.body is not None:
        op["requestBody"] = {
            "required": doc.body_required,
            "content": {"application/json": {"schema": doc.body}},
        }
    return op


def build(server: Router, management: Management) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    tables = (
        ("", server.routes(), "JobServerError"),
        (management.prefix, management.routes(), "ApiError"),
    )
    for prefix, routes, error_schema in tables:
        for route in routes:
            if route.doc is None or route.method == "WS":
                continue
            path = _path(prefix, route)
            paths.setdefault(path, {})[route.method.lower()] = _operation(
                route, route.doc, path, error_schema
            )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hopper",
            "version": __version__,
            "description": (
                "Two APIs on one engine: the job server (bunqueue-compatible: push, pull, ack, "
                "fail, events; WebSocket commands on /ws are described in docs/compatibility.md) "
                f"and the management API of the dashboard under {management.prefix}."
            ),
            "license": {"name": "MIT"},
        },
        "paths": paths,
        "components": {
            "schemas": {**JOB_SERVER_COMPONENTS, **MANAGEMENT_COMPONENTS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def register(router: Router, management: Management) -> None:
    cached: list[bytes] = []

    async def openapi(_req: Request) -> Response:
        if not cached:
            cached.append(orjson.dumps(build(router, management)))
        return Response(200, cached[0])

    router.add(
        "GET",
        "/openapi.json",
        openapi,
        auth=Auth.EXEMPT,
        doc=Doc("This document (OpenAPI 3.1)", "Meta", {"type": "object"}),
    )
