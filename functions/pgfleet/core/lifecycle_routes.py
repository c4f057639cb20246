"""start / stop / restart / delete routes, the same for every resource type.

Annotations here are evaluated at definition time (no `from __future__ import annotations`)
so that Powertools sees the real parameter and return types of the generated routes.
"""

from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from pgfleet.core.domain import requires
from pgfleet.core.resources import a
from pgfleet.core.routing import ports, principal

# Backups: a last full backup before the delete; the backups then outlive the resource for
# their retention and can be restored into a new one.
FinalBackup = Annotated[
    bool,
    Query(description="Take a last full backup first and keep the backups for their retention."),
]

ACTIONS = {
    "start": ("post", "/<resource_id>/start", "Start a stopped {noun}"),
    "stop": ("post", "/<resource_id>/stop", "Stop a running {noun}"),
    "restart": ("post", "/<resource_id>/restart", "Restart a running {noun}"),
    "delete": ("delete", "/<resource_id>", "Delete {a_noun} and its data"),
}


def add_lifecycle_routes(
    router: Router,
    noun: str,
    resource_id_type: Any,
    response_model: type,
    transition: Callable[..., dict[str, Any]],
    view: Callable[[dict[str, Any]], dict[str, Any]],
    permission: str = "postgres:write",
) -> None:
    """Register the four lifecycle routes; each answers 202 with the resource."""
    for action, (method, path, summary) in ACTIONS.items():
        if action == "delete":
            continue

        def handler(resource_id: resource_id_type, _action: str = action) -> response_model:  # type: ignore[valid-type]
            record = transition(ports(), principal(router), resource_id, _action)
            return response_model.model_validate(view(record))  # type: ignore[attr-defined, no-any-return]

        handler.__name__ = f"{action}_{noun}"
        # `_action` is bound by default; hide it from the OpenAPI parameters.
        handler.__signature__ = _without_action(handler)  # type: ignore[attr-defined]
        getattr(router, method)(path, summary=summary.format(noun=noun, a_noun=a(noun)), status_code=202)(
            requires(permission)(handler)
        )

    def delete(resource_id: resource_id_type, final_backup: FinalBackup = False) -> response_model:  # type: ignore[valid-type]
        params = {"final_backup": True} if final_backup else None
        record = transition(ports(), principal(router), resource_id, "delete", params)
        return response_model.model_validate(view(record))  # type: ignore[attr-defined, no-any-return]

    delete.__name__ = f"delete_{noun}"
    method, path, summary = ACTIONS["delete"]
    getattr(router, method)(path, summary=summary.format(noun=noun, a_noun=a(noun)), status_code=202)(
        requires(permission)(delete)
    )


def _without_action(fn: Callable[..., Any]) -> Any:
    import inspect

    sig = inspect.signature(fn)
    return sig.replace(parameters=[p for n, p in sig.parameters.items() if n != "_action"])
