"""How a Terraform resource maps onto one API object: the declarations `catalog.py` writes.

A `ResourceSpec` says where the object lives (its collection path, or one path per kind of
parent), which pydantic model a create request is (its fields become the Terraform arguments),
which response fields become computed attributes, which arguments change in place through
which endpoint, and which force a replacement. Everything else (schema, CRUD, import,
diagnostics, docs) is derived from it.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


def placeholders(path: str) -> tuple[str, ...]:
    """The `{param}` names of a path template, in order."""
    return tuple(p for _, p, _, _ in string.Formatter().parse(path) if p)


def dig(body: Any, path: tuple[str, ...], missing: Any = None) -> Any:
    """The value at a dotted path through objects and lists (`replicas.0.id`). Below a null
    object the value is null (`pooler.host` of an instance without a pooler), not missing."""
    for key in path:
        if body is None:
            return None
        if isinstance(body, dict) and key in body:
            body = body[key]
        elif isinstance(body, list) and key.isdigit() and int(key) < len(body):
            body = body[int(key)]
        else:
            return missing
    return body


@dataclass(frozen=True)
class Computed:
    """An attribute the API decides, read from the response at a dotted `source` path."""

    name: str
    source: str = ""  # dotted path in the response body; defaults to `name`
    sensitive: bool = False
    # Only the create response carries it (a password shown once): later reads keep the value
    # in state, and an imported resource has none.
    create_only: bool = False
    # Used only where the response model has no description of its own.
    description: str = ""
    # A list of objects: the attributes of each item, their sources relative to the item.
    items: tuple[Computed, ...] = ()
    # An in-place change cannot alter it (an address a resize keeps), so the plan of an update
    # keeps its value; any other computed attribute is "known after apply" in that plan.
    stable: bool = False

    @property
    def path(self) -> tuple[str, ...]:
        return tuple((self.source or self.name).split("."))


@dataclass(frozen=True)
class InPlaceUpdate:
    """Arguments that change without replacing the object: `METHOD <object>/<action>` with a
    body of those arguments, answered with the object (and the operation doing the work)."""

    action: str  # "": the object's own path, e.g. a PUT of a whole document
    attributes: tuple[str, ...]
    method: str = "POST"  # "": no request (an argument only the provider reads)
    # Body field names that differ from the attribute names (`version` -> `target_version`).
    rename: Mapping[str, str] = field(default_factory=dict)
    # Arguments sent along with the change without being a reason for it (`upgrade_mode`).
    along: tuple[str, ...] = ()
    # A request elsewhere than the object's path (an API of another domain that takes the
    # object's id in its body): (path, body) from the planned state, its `id` known.
    target: Callable[[Mapping[str, Any]], tuple[str, dict[str, Any]]] | None = None
    # Where the answer names its operation, when not the resource's `operation_field`.
    operation_field: str = ""
    # Made right after the create too, when one of its attributes is set (the create request
    # has no such field): `pooler_mode` puts a pooler in front of a new instance.
    on_create: bool = False

    def body(self, planned: Mapping[str, Any]) -> dict[str, Any]:
        return {self.rename.get(a, a): planned[a] for a in (*self.attributes, *self.along) if a in planned}

    @classmethod
    def document(cls, model: type[BaseModel]) -> InPlaceUpdate:
        """Every field of `model` at once, by a PUT of the whole document to the object."""
        return cls("", tuple(model.model_fields), method="PUT")


@dataclass(frozen=True)
class Singleton:
    """An object every parent has exactly once, at the path itself and without an id of its own
    (a quota, a backup schedule). It always exists, so "create" and every change PUT the whole
    document; destroying it DELETEs it, or, where the API has no DELETE (`reset`), PUTs an
    empty document so that the model's defaults apply again."""

    reset: bool = False


@dataclass(frozen=True)
class ResourceSpec:
    """One API object as a Terraform resource `pgfleet_<name>`."""

    name: str  # the name stem: pgfleet_<name>, docs/resources/<name>.md
    # The collection path; `{param}` placeholders are parent ids (see `parents`). Several paths
    # are alternatives (a tenant of an instance or of a cluster): a configuration sets the
    # parents of exactly one of them.
    path: str | tuple[str, ...]
    create: type[BaseModel]  # the create request body: the resource's arguments
    response: type[BaseModel]  # what create answers: descriptions of computed attributes
    description: str
    computed: tuple[Computed, ...] = ()
    in_place: tuple[InPlaceUpdate, ...] = ()
    force_new: tuple[str, ...] = ()
    # Parent ids in the path, with their descriptions: arguments that force replacement, never
    # sent in the body; an import id is "<parent>/.../<id>".
    parents: Mapping[str, str] = field(default_factory=dict)
    # Arguments the response names differently: argument -> dotted path in the response.
    sources: Mapping[str, str] = field(default_factory=dict)
    # Optional arguments the API chooses when they are absent (a generated password): planned
    # as "known after apply" instead of null.
    generated: tuple[str, ...] = ()
    # Arguments the API stores in a canonical spelling (`0 3 * * ? *` as `cron(0 3 * * ? *)`):
    # argument -> that spelling of a value. State keeps the configured spelling while the API's
    # value is the same setting, so that neither the apply nor the next plan sees a change.
    equivalent: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    # Descriptions for arguments whose model field has none (a field's own always wins).
    descriptions: Mapping[str, str] = field(default_factory=dict)
    # Create-body fields that are not arguments: one Terraform resource is one object, so a
    # request that could create several asks for exactly one.
    fixed: Mapping[str, object] = field(default_factory=dict)
    created: str = ""  # dotted path of the object in the create answer; "": the answer itself
    listed: str = ""  # read by GET of the collection, the objects under this field (no GET by id)
    singleton: Singleton | None = None
    id_field: str = "id"
    id_description: str = "Identifier assigned by pgfleet; `terraform import` takes it."
    operation_field: str = "operation_id"
    example: Mapping[str, object] = field(default_factory=dict)  # values for the generated example
    timeout_seconds: float = 1800
    # Arguments of `create` the API does not take on create (how a later change is made).
    local: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        arguments = set(self.arguments)
        updated = [a for u in self.in_place for a in u.attributes]
        # Every argument must say how it changes: a field added to the model later fails here
        # instead of silently being planned as an in-place update the API cannot do.
        undecided = arguments - set(updated) - set(self.force_new)
        if undecided:
            raise ValueError(f"{self.name}: say whether {sorted(undecided)} update in place or force new")
        both = set(updated) & set(self.force_new)
        if both or len(updated) != len(set(updated)):
            raise ValueError(f"{self.name}: {sorted(both or updated)} declared twice")
        named_arguments = (
            *updated,
            *self.force_new,
            *self.sources,
            *self.generated,
            *self.descriptions,
            *self.equivalent,
        )
        unknown = set(named_arguments) - arguments
        if unknown:
            raise ValueError(f"{self.name}: {sorted(unknown)} are not arguments of {self.create.__name__}")
        named = {p for path in self.paths for p in placeholders(path)}
        if named != set(self.parents):
            raise ValueError(f"{self.name}: path parameters {named} != parents {set(self.parents)}")
        if len({frozenset(placeholders(p)) for p in self.paths}) != len(self.paths):
            raise ValueError(f"{self.name}: alternative paths must name different parents")
        if self.singleton and self.singleton.reset:
            self.create.model_validate({})  # a reset PUTs {}: the model must accept it

    @property
    def type_name(self) -> str:
        from pgfleet.provider import TYPE_PREFIX

        return TYPE_PREFIX + self.name

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path,) if isinstance(self.path, str) else self.path

    @property
    def arguments(self) -> tuple[str, ...]:
        return tuple(name for name in self.create.model_fields if name not in self.fixed)

    @property
    def parent_names(self) -> tuple[str, ...]:
        """Parent ids in the order the paths name them."""
        return tuple(dict.fromkeys(p for path in self.paths for p in placeholders(path)))

    def required_parent(self, name: str) -> bool:
        """A parent every path names; the others are alternatives."""
        return all(name in placeholders(path) for path in self.paths)

    def path_for(self, state: Mapping[str, object]) -> str:
        """The path whose parents `state` sets (an unknown value counts as set); ValueError
        unless exactly one path fits."""
        given = {p for p in self.parent_names if state.get(p) is not None}
        fitting = [path for path in self.paths if set(placeholders(path)) == given]
        if len(fitting) != 1:
            choices = [" and ".join(f"`{p}`" for p in placeholders(path)) for path in self.paths]
            raise ValueError(("set exactly one of " if len(choices) > 1 else "set ") + ", ".join(choices))
        return fitting[0]

    def collection_path(self, state: Mapping[str, object]) -> str:
        path = self.path_for(state)
        return path.format(**{p: state[p] for p in placeholders(path)})

    def item_path(self, state: Mapping[str, object]) -> str:
        collection = self.collection_path(state)
        return collection if self.singleton else f"{collection}/{state['id']}"

    def _import_names(self, path: str) -> tuple[str, ...]:
        # A singleton's id is its parent's: the parent ids alone name it.
        return placeholders(path) if self.singleton else (*placeholders(path), "id")

    def import_candidates(self, import_id: str) -> list[dict[str, str]]:
        """The parent ids and id an import id may mean: `<parent>/.../<id>`, or the parent ids
        alone for a singleton. Alternative paths with as many parents give several candidates,
        to be tried in order."""
        parts = import_id.split("/")
        candidates = [
            {**dict(zip(names, parts, strict=True)), "id": parts[-1]}
            for names in map(self._import_names, self.paths)
            if len(parts) == len(names) and all(parts)
        ]
        if not candidates:
            raise ValueError(f"expected an import id of the form {' or '.join(self.import_forms)}")
        return candidates

    @property
    def import_forms(self) -> tuple[str, ...]:
        """What `terraform import` takes, e.g. `<cluster_id>/<id>`, one per path."""
        return tuple("/".join(f"<{n}>" for n in self._import_names(p)) for p in self.paths)


@dataclass(frozen=True)
class DataSourceSpec:
    """A data source `pgfleet_<name>` that reads one object of a resource by id."""

    resource: ResourceSpec
    description: str

    @property
    def name(self) -> str:
        return self.resource.name

    @property
    def type_name(self) -> str:
        return self.resource.type_name
