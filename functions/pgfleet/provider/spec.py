"""How a Terraform resource maps onto one API object: the declarations `catalog.py` writes.

A `ResourceSpec` says where the object lives (its collection path), which pydantic model a
create request is (its fields become the Terraform arguments), which response fields become
computed attributes, which arguments change in place through which endpoint, and which force
a replacement. Everything else (schema, CRUD, import, diagnostics, docs) is derived from it.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel


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

    @property
    def path(self) -> tuple[str, ...]:
        return tuple((self.source or self.name).split("."))


@dataclass(frozen=True)
class InPlaceUpdate:
    """Arguments that change without replacing the object: `METHOD <object>/<action>` with a
    body of those arguments, answered with the object and the operation doing the work."""

    action: str
    attributes: tuple[str, ...]
    method: str = "POST"


@dataclass(frozen=True)
class ResourceSpec:
    """One API object as a Terraform resource `pgfleet_<name>`."""

    name: str  # the name stem: pgfleet_<name>, docs/resources/<name>.md
    path: str  # collection path; `{param}` placeholders are parent ids (see `parents`)
    create: type[BaseModel]  # the create request body: the resource's arguments
    response: type[BaseModel]  # what create answers: descriptions of computed attributes
    description: str
    computed: tuple[Computed, ...] = ()
    in_place: tuple[InPlaceUpdate, ...] = ()
    force_new: tuple[str, ...] = ()
    # Parent ids in the path, with their descriptions: required arguments that force
    # replacement, never sent in the body; an import id is "<parent>/.../<id>".
    parents: Mapping[str, str] = field(default_factory=dict)
    id_field: str = "id"
    id_description: str = "Identifier assigned by pgfleet; `terraform import` takes it."
    operation_field: str = "operation_id"
    example: Mapping[str, object] = field(default_factory=dict)  # values for the generated example
    timeout_seconds: float = 1800

    def __post_init__(self) -> None:
        arguments = set(self.create.model_fields)
        updated = [a for u in self.in_place for a in u.attributes]
        # Every argument must say how it changes: a field added to the model later fails here
        # instead of silently being planned as an in-place update the API cannot do.
        undecided = arguments - set(updated) - set(self.force_new)
        if undecided:
            raise ValueError(f"{self.name}: say whether {sorted(undecided)} update in place or force new")
        both = set(updated) & set(self.force_new)
        if both or len(updated) != len(set(updated)):
            raise ValueError(f"{self.name}: {sorted(both or updated)} declared twice")
        unknown = (set(updated) | set(self.force_new)) - arguments
        if unknown:
            raise ValueError(f"{self.name}: {sorted(unknown)} are not fields of {self.create.__name__}")
        placeholders = {p for _, p, _, _ in string.Formatter().parse(self.path) if p}
        if placeholders != set(self.parents):
            raise ValueError(f"{self.name}: path parameters {placeholders} != parents {set(self.parents)}")

    @property
    def type_name(self) -> str:
        from pgfleet.provider import TYPE_PREFIX

        return TYPE_PREFIX + self.name

    @property
    def arguments(self) -> tuple[str, ...]:
        return tuple(self.create.model_fields)

    @property
    def parent_names(self) -> tuple[str, ...]:
        """Parent ids in the order the path names them (the order of an import id)."""
        return tuple(p for _, p, _, _ in string.Formatter().parse(self.path) if p)

    def collection_path(self, state: Mapping[str, object]) -> str:
        return self.path.format(**{p: state[p] for p in self.parent_names})

    def item_path(self, state: Mapping[str, object]) -> str:
        return f"{self.collection_path(state)}/{state['id']}"

    def parse_import_id(self, import_id: str) -> dict[str, str]:
        """`<parent>/.../<id>` into the parent ids and the id."""
        parts = import_id.split("/")
        names = (*self.parent_names, "id")
        if len(parts) != len(names) or not all(parts):
            raise ValueError(f"expected an import id of the form {'/'.join(f'<{n}>' for n in names)}")
        return dict(zip(names, parts, strict=True))


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
