"""One implementation of create/read/update/delete/import for every pgfleet resource.

A resource class is made from a `ResourceSpec` (see `catalog.py`). The lifecycle follows the
API's contract: a create or change answers 202 with the object and an `operation_id`, and the
provider waits for that operation (its failure becomes a diagnostic) before reading the object
back, so the state Terraform records is what the API shows once the work is done.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ValidationError
from tf.iface import (
    Config,
    CreateContext,
    DataSource,
    DeleteContext,
    ImportContext,
    ReadContext,
    ReadDataContext,
    Resource,
    State,
    UpdateContext,
)
from tf.schema import Schema
from tf.types import Unknown
from tf.utils import Diagnostics

from pgfleet.provider.client import ApiClient, ApiError, OperationFailed, OperationTimeout
from pgfleet.provider.diagnostics import add_api_error, add_field_errors, validation_errors
from pgfleet.provider.schema import data_source_schema, resource_schema
from pgfleet.provider.spec import DataSourceSpec, ResourceSpec

_MISSING = object()


class ClientSource(Protocol):
    """The configured provider, as resources see it."""

    def api_client(self, diags: Diagnostics) -> ApiClient | None: ...


def _dig(body: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(body, dict) or key not in body:
            return _MISSING
        body = body[key]
    return body


def to_state(
    spec: ResourceSpec, body: dict[str, Any], prior: dict[str, Any], create_only: bool = True
) -> State:
    """The Terraform state of an API object. Values the answer does not carry (a password
    after creation, the parent ids in the path) are kept from `prior`."""
    state: State = {"id": body[spec.id_field]}
    for name in spec.parent_names:
        state[name] = prior.get(name)
    for name in spec.arguments:
        value = _dig(body, (name,))
        state[name] = prior.get(name) if value is _MISSING else value
    for c in spec.computed:
        if c.create_only and not create_only:
            continue
        value = _dig(body, c.path)
        state[c.name] = prior.get(c.name) if value is _MISSING else value
    return state


def _known(value: Any) -> bool:
    return value is not None and value is not Unknown


def check_arguments(diags: Diagnostics, model: type[BaseModel], config: Config) -> None:
    """Validate the configured values with the API's own model, at plan time. Unset and
    not-yet-known values are left to the API."""
    known = {k: v for k, v in config.items() if k in model.model_fields and _known(v)}
    try:
        model.model_validate(known)
    except ValidationError as exc:
        errors = [
            pair
            for pair, err in zip(validation_errors(exc), exc.errors(), strict=True)
            if err["type"] != "missing"
        ]
        add_field_errors(diags, errors, known)


class ApiResource(Resource):
    """A Terraform resource for the API object its `spec` describes."""

    spec: ClassVar[ResourceSpec]
    _schema: ClassVar[Schema | None] = None

    def __init__(self, provider: ClientSource) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return cls.spec.name

    @classmethod
    def get_schema(cls) -> Schema:
        if cls._schema is None:
            cls._schema = resource_schema(cls.spec)
        return cls._schema

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        if not diags.has_errors():
            check_arguments(diags, self.spec.create, config)

    # --- lifecycle -------------------------------------------------------------------

    def create(self, ctx: CreateContext, planned: State) -> State | None:
        spec = self.spec
        client = self.provider.api_client(ctx.diagnostics)
        if client is None:
            return None
        body = {name: planned[name] for name in spec.arguments if _known(planned.get(name))}
        try:
            answer = client.create(spec.collection_path(planned), body)
        except ApiError as exc:
            add_api_error(ctx.diagnostics, f"Could not create {spec.type_name}", exc, spec.arguments)
            return None
        # From here on the object exists: return its state even if the work fails, so that
        # Terraform records it (tainted) and a later apply replaces or destroys it.
        return self._finish(ctx.diagnostics, client, to_state(spec, answer, planned), answer, "create")

    def read(self, ctx: ReadContext, current: State) -> State | None:
        client = self.provider.api_client(ctx.diagnostics)
        if client is None:
            return current
        try:
            body = client.request("GET", self.spec.item_path(current))
        except ApiError as exc:
            if exc.status == 404:
                return None  # gone: Terraform plans to create it again
            add_api_error(ctx.diagnostics, f"Could not read {self.spec.type_name}", exc, ())
            return current
        return to_state(self.spec, body, current)

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State | None:
        spec = self.spec
        client = self.provider.api_client(ctx.diagnostics)
        if client is None:
            return current
        state = current
        for change in spec.in_place:
            if all(current.get(a) == planned.get(a) for a in change.attributes):
                continue
            body = {a: planned[a] for a in change.attributes if _known(planned.get(a))}
            try:
                answer = client.request(change.method, f"{spec.item_path(current)}/{change.action}", body)
            except ApiError as exc:
                add_api_error(
                    ctx.diagnostics, f"Could not {change.action} {spec.type_name}", exc, change.attributes
                )
                return state
            state = self._finish(ctx.diagnostics, client, state, answer, change.action)
            if ctx.diagnostics.has_errors():
                return state
        return state

    def delete(self, ctx: DeleteContext, current: State) -> State | None:
        spec = self.spec
        client = self.provider.api_client(ctx.diagnostics)
        if client is None:
            return current
        try:
            answer = self._request_delete(client, spec.item_path(current))
            operation = (answer or {}).get(spec.operation_field)
            if operation:
                client.wait_operation(operation, spec.timeout_seconds)
        except ApiError as exc:
            if exc.status == 404:
                return None  # already gone is what delete wants
            add_api_error(ctx.diagnostics, f"Could not delete {spec.type_name} {current['id']}", exc, ())
            return current
        except (OperationFailed, OperationTimeout) as exc:
            ctx.diagnostics.add_error(f"Deleting {spec.type_name} {current['id']} failed", str(exc))
            return current
        return None

    def import_(self, ctx: ImportContext, id: str) -> State | None:
        spec = self.spec
        try:
            ids = spec.parse_import_id(id)
        except ValueError as exc:
            ctx.diagnostics.add_error(f"Cannot import {spec.type_name} {id!r}", str(exc))
            return None
        client = self.provider.api_client(ctx.diagnostics)
        if client is None:
            return None
        try:
            body = client.request("GET", spec.item_path(ids))
        except ApiError as exc:
            add_api_error(ctx.diagnostics, f"Cannot import {spec.type_name} {id!r}", exc, ())
            return None
        return to_state(spec, body, dict(ids))

    # --- helpers -----------------------------------------------------------------------

    def _finish(
        self, diags: Diagnostics, client: ApiClient, state: State, answer: dict[str, Any], verb: str
    ) -> State:
        """Wait for the operation an answer started, then read the object back."""
        spec = self.spec
        operation = answer.get(spec.operation_field)
        try:
            if operation:
                client.wait_operation(operation, spec.timeout_seconds)
        except (OperationFailed, OperationTimeout) as exc:
            diags.add_error(
                f"{verb.capitalize()} of {spec.type_name} {state['id']} did not succeed", str(exc)
            )
        except ApiError as exc:
            add_api_error(diags, f"Could not follow {verb} of {spec.type_name} {state['id']}", exc, ())
        try:
            return to_state(spec, client.request("GET", spec.item_path(state)), state)
        except ApiError as exc:
            if not diags.has_errors():
                add_api_error(diags, f"Could not read {spec.type_name} {state['id']} after {verb}", exc, ())
            return state

    def _request_delete(self, client: ApiClient, path: str) -> dict[str, Any] | None:
        """DELETE the object. When it is busy (409: still creating, already deleting), wait
        for the operation it is running and ask once more; a 404 is left to the caller."""
        try:
            answer: dict[str, Any] | None = client.request("DELETE", path)
            return answer
        except ApiError as exc:
            if exc.status != 409:
                raise
        operation = client.request("GET", path).get(self.spec.operation_field)
        if operation:
            try:
                client.wait_operation(operation, self.spec.timeout_seconds)
            except OperationFailed:
                pass  # a failed create can still be deleted
        answer = client.request("DELETE", path)
        return answer


class ApiDataSource(DataSource):
    """Reads one API object by id."""

    spec: ClassVar[DataSourceSpec]
    _schema: ClassVar[Schema | None] = None

    def __init__(self, provider: ClientSource) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return cls.spec.name

    @classmethod
    def get_schema(cls) -> Schema:
        if cls._schema is None:
            cls._schema = data_source_schema(cls.spec)
        return cls._schema

    def read(self, ctx: ReadDataContext, config: Config) -> State | None:
        resource = self.spec.resource
        client = self.provider.api_client(ctx.diagnostics)
        if client is None:
            return None
        ids = {name: config[name] for name in (*resource.parent_names, "id")}
        try:
            body = client.request("GET", resource.item_path(ids))
        except ApiError as exc:
            add_api_error(ctx.diagnostics, f"Cannot read {resource.type_name} {config['id']}", exc, ())
            return None
        return to_state(resource, body, ids, create_only=False)


def _class_name(name: str, suffix: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + suffix


def resource_class(spec: ResourceSpec) -> type[ApiResource]:
    return type(_class_name(spec.name, "Resource"), (ApiResource,), {"spec": spec, "_schema": None})


def data_source_class(spec: DataSourceSpec) -> type[ApiDataSource]:
    return type(_class_name(spec.name, "DataSource"), (ApiDataSource,), {"spec": spec, "_schema": None})
