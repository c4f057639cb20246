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
    PlanContext,
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
from pgfleet.provider.schema import conform, data_source_schema, field_at, nested_model, resource_schema
from pgfleet.provider.spec import Computed, DataSourceSpec, InPlaceUpdate, ResourceSpec, dig

_MISSING = object()


class ClientSource(Protocol):
    """The configured provider, as resources see it."""

    def api_client(self, diags: Diagnostics) -> ApiClient | None: ...


def _known(value: Any) -> bool:
    return value is not None and value is not Unknown


def known_value(value: Any) -> Any:
    """A configured or planned value as the API takes it: null and unknown attributes of
    objects left out, at every level (absent means the API's default)."""
    if isinstance(value, dict):
        return {k: known_value(v) for k, v in value.items() if _known(v)}
    if isinstance(value, list):
        return [known_value(v) for v in value]
    return value


def _computed_value(computed: Computed, model: type[BaseModel], value: Any) -> Any:
    """A computed value shaped as its attribute: a list of objects projected onto `items`."""
    if not computed.items:
        return conform(field_at(model, computed.path).annotation, value)
    item_model = nested_model(field_at(model, computed.path).annotation)
    assert item_model is not None  # checked when the schema was built
    return [
        {i.name: _computed_value(i, item_model[0], dig(item, i.path)) for i in computed.items}
        for item in value or []
    ]


def to_state(
    spec: ResourceSpec, body: dict[str, Any], prior: dict[str, Any], create_only: bool = True
) -> State:
    """The Terraform state of an API object. Values the answer does not carry (a password
    after creation, the parent ids in the path) are kept from `prior`."""
    state: State = {"id": body[spec.id_field]}
    for name in spec.parent_names:
        state[name] = prior.get(name)
    for name in spec.arguments:
        value = dig(body, tuple(spec.sources.get(name, name).split(".")), _MISSING)
        annotation = spec.create.model_fields[name].annotation
        state[name] = prior.get(name) if value is _MISSING else conform(annotation, value)
        canonical = spec.equivalent.get(name)
        if canonical and _known(prior.get(name)) and canonical(prior[name]) == canonical(state[name]):
            state[name] = prior[name]
    for c in spec.computed:
        if c.create_only and not create_only:
            continue
        value = dig(body, c.path, _MISSING)
        state[c.name] = prior.get(c.name) if value is _MISSING else _computed_value(c, spec.response, value)
    return state


def fetch(spec: ResourceSpec, client: ApiClient, ids: dict[str, Any]) -> dict[str, Any]:
    """GET the object, from its collection's listing where the API has no GET by id; a
    missing object is an ApiError with status 404 either way."""
    if not spec.listed:
        found: dict[str, Any] = client.request("GET", spec.item_path(ids))
        return found
    path = spec.collection_path(ids)
    for item in client.request("GET", path).get(spec.listed) or []:
        if item.get(spec.id_field) == ids["id"]:
            return dict(item)
    raise ApiError("GET", path, 404, "not_found", f"{spec.name} {ids['id']} is not in {path}")


def check_arguments(diags: Diagnostics, model: type[BaseModel], config: Config) -> None:
    """Validate the configured values with the API's own model, at plan time. Unset and
    not-yet-known values are left to the API."""
    known = {k: known_value(v) for k, v in config.items() if k in model.model_fields and _known(v)}
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
        if diags.has_errors():
            return
        if self.spec.parents:
            try:
                self.spec.path_for(config)
            except ValueError as exc:
                diags.add_error(f"Invalid parent of {self.spec.type_name}", str(exc))
        check_arguments(diags, self.spec.create, config)

    def plan(self, ctx: PlanContext, current: State | None, planned: State) -> State | None:
        """An in-place change may alter what the API computes (a scale changes the nodes): those
        attributes are known after apply, except the ones declared stable and the ones only a
        create shows (kept from state whatever happens)."""
        updated = {a for change in self.spec.in_place for a in change.attributes}
        if current is not None and ctx.changed_fields & updated:
            for c in self.spec.computed:
                if not (c.stable or c.create_only):
                    planned[c.name] = Unknown
        return planned

    # --- lifecycle -------------------------------------------------------------------

    def create(self, ctx: CreateContext, planned: State) -> State | None:
        spec = self.spec
        client = self.provider.api_client(ctx.diagnostics)
        if client is None:
            return None
        arguments = {
            name: known_value(planned[name])
            for name in spec.arguments
            if name not in spec.local and _known(planned.get(name))
        }
        body = {**spec.fixed, **arguments}
        try:
            if spec.singleton:
                answer = client.request("PUT", spec.item_path(planned), body)
            else:
                answer = client.create(spec.collection_path(planned), body)
        except ApiError as exc:
            add_api_error(ctx.diagnostics, f"Could not create {spec.type_name}", exc, spec.arguments)
            return None
        created = dig(answer, tuple(spec.created.split("."))) if spec.created else answer
        if not isinstance(created, dict):
            ctx.diagnostics.add_error(f"Could not create {spec.type_name}", f"unexpected answer: {answer!r}")
            return None
        # From here on the object exists: return its state even if the work fails, so that
        # Terraform records it (tainted) and a later apply replaces or destroys it.
        state = self._finish(ctx.diagnostics, client, to_state(spec, created, planned), created, "create")
        for change in spec.in_place:
            if ctx.diagnostics.has_errors():
                break
            if change.on_create and any(
                _known(planned.get(a)) and planned.get(a) is not None for a in change.attributes
            ):
                state = self._change(ctx.diagnostics, client, change, state, planned)
        return state

    def read(self, ctx: ReadContext, current: State) -> State | None:
        client = self.provider.api_client(ctx.diagnostics)
        if client is None:
            return current
        try:
            body = fetch(self.spec, client, current)
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
            state = self._change(ctx.diagnostics, client, change, state, planned)
            if ctx.diagnostics.has_errors():
                return state
        return state

    def _change(
        self, diags: Diagnostics, client: ApiClient, change: InPlaceUpdate, state: State, planned: State
    ) -> State:
        """Make one in-place change, wait for its operation, and read the object back."""
        spec = self.spec
        if not change.method:  # only the provider reads it: the new value is the state
            return {**state, **{a: planned.get(a) for a in change.attributes}}
        known = {a: known_value(v) for a, v in planned.items() if _known(v)}
        if change.target is not None:
            path, body = change.target({**known, "id": state["id"]})
        else:
            body = change.body(known)
            path = spec.item_path(state)
            path = f"{path}/{change.action}" if change.action else path
        try:
            answer = client.request(change.method, path, body)
        except ApiError as exc:
            action = change.action or "update"
            add_api_error(diags, f"Could not {action} {spec.type_name}", exc, change.attributes)
            return state
        # The changed arguments' prior is what was planned: a value the API shows in another
        # spelling (or masked, as a secret) keeps the configured one.
        state = {**state, **{a: planned.get(a) for a in change.attributes}}
        answer = answer or {}
        if change.operation_field:
            answer = {spec.operation_field: answer.get(change.operation_field)}
        return self._finish(diags, client, state, answer, change.action or "update")

    def delete(self, ctx: DeleteContext, current: State) -> State | None:
        spec = self.spec
        client = self.provider.api_client(ctx.diagnostics)
        if client is None:
            return current
        try:
            answer = self._request_delete(client, current)
            operation = (answer or {}).get(spec.operation_field)
            if operation:
                client.wait_operation(operation, spec.timeout_seconds)
        except ApiError as exc:
            if exc.status == 404:
                return None  # already gone (or its parent is) is what delete wants
            add_api_error(ctx.diagnostics, f"Could not delete {spec.type_name} {current['id']}", exc, ())
            return current
        except (OperationFailed, OperationTimeout) as exc:
            ctx.diagnostics.add_error(f"Deleting {spec.type_name} {current['id']} failed", str(exc))
            return current
        return None

    def import_(self, ctx: ImportContext, id: str) -> State | None:
        spec = self.spec
        try:
            candidates = spec.import_candidates(id)
        except ValueError as exc:
            ctx.diagnostics.add_error(f"Cannot import {spec.type_name} {id!r}", str(exc))
            return None
        client = self.provider.api_client(ctx.diagnostics)
        if client is None:
            return None
        failure: ApiError | None = None
        # Alternatives (an instance's tenant or a cluster's): the API refuses the wrong one.
        for ids in candidates:
            try:
                return to_state(spec, fetch(spec, client, ids), dict(ids))
            except ApiError as exc:
                failure = exc
        assert failure is not None
        add_api_error(ctx.diagnostics, f"Cannot import {spec.type_name} {id!r}", failure, ())
        return None

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
            return to_state(spec, fetch(spec, client, state), state)
        except ApiError as exc:
            if not diags.has_errors():
                add_api_error(diags, f"Could not read {spec.type_name} {state['id']} after {verb}", exc, ())
            return state

    def _request_delete(self, client: ApiClient, state: State) -> dict[str, Any] | None:
        """DELETE the object (a resettable singleton: PUT an empty document). When it is busy
        (409: still creating, already deleting), wait for the operation it is running and ask
        once more; a 404 is left to the caller."""
        spec = self.spec
        path = spec.item_path(state)
        body: dict[str, Any] | None = {} if spec.singleton and spec.singleton.reset else None
        method = "DELETE" if body is None else "PUT"
        try:
            answer: dict[str, Any] | None = client.request(method, path, body)
            return answer
        except ApiError as exc:
            if exc.status != 409:
                raise
        operation = fetch(spec, client, state).get(spec.operation_field)
        if operation:
            try:
                client.wait_operation(operation, spec.timeout_seconds)
            except OperationFailed:
                pass  # a failed create can still be deleted
        answer = client.request(method, path, body)
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
        ids = {name: config.get(name) for name in (*resource.parent_names, "id")}
        try:
            body = fetch(resource, client, ids)
        except ValueError as exc:
            ctx.diagnostics.add_error(f"Invalid parent of {resource.type_name}", str(exc))
            return None
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
