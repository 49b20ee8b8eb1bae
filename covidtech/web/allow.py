"""The methods a path answers, for ``Allow`` and ``OPTIONS`` on both APIs.

Both APIs declare one route per operation (path and method), so two operations on one path
(``GET`` and ``POST /v1/grants``) are two routes. Starlette answers a method no route of the
path takes with the ``Allow`` of the first route it tried, so ``Allow`` named only some of
the path's methods. Here ``Allow`` lists every method of every route matching the path, and
``OPTIONS`` is answered (204) with it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["allowed_methods", "options_response"]


def allowed_methods(request: Request) -> str:
    """``Allow`` for the request's path: every method its routes take, and ``OPTIONS``."""
    path = request.scope.get("path", request.url.path)
    methods = {"OPTIONS"}
    for route in request.app.router.routes:
        regex = getattr(route, "path_regex", None)
        taken = getattr(route, "methods", None)
        if regex is not None and taken and regex.match(path):
            methods |= set(taken)
    return ", ".join(sorted(methods))


def options_response(request: Request) -> Response:
    """The answer to ``OPTIONS`` on a path some route serves."""
    return Response(status_code=204, headers={"Allow": allowed_methods(request)})
