"""Terraform schemas generated from the API's pydantic models.

The API validates requests with these models and publishes them in its OpenAPI document; the
provider derives its attribute types, required/optional, defaults and descriptions from the
very same fields, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from tf import types as tft
from tf.gen import tfplugin_pb2 as pb
from tf.schema import Attribute, Schema
from tf.types import Unknown

from pgfleet.provider.spec import Computed, DataSourceSpec, ResourceSpec

Nesting = Literal["single", "list"]

SCHEMA_VERSION = 0

PROVIDER_ATTRIBUTES = (
    Attribute(
        "endpoint",
        tft.String(),
        description="URL of the pgfleet API, e.g. `http://127.0.0.1:8080`. Defaults to `$PGFLEET_API_URL`.",
        optional=True,
    ),
    Attribute(
        "token",
        tft.String(),
        description="Bearer token (a JWT) sent with every request. Defaults to `$PGFLEET_TOKEN`.",
        optional=True,
        sensitive=True,
    ),
)


def provider_schema() -> Schema:
    return Schema(version=SCHEMA_VERSION, attributes=list(PROVIDER_ATTRIBUTES))


def _without_none(annotation: Any) -> Any:
    """`X | None` as X, and `Annotated[X, ...]` (kept inside an Optional) as X."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            annotation = rest[0]
    if get_origin(annotation) is Annotated:
        return get_args(annotation)[0]
    return annotation


def _inner_metadata(annotation: Any) -> list[Any]:
    """Constraints of an `Annotated[X, Field(...)] | None`: pydantic keeps them on the inner type."""
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            if get_origin(arg) is Annotated:
                return [m for meta in get_args(arg)[1:] for m in getattr(meta, "metadata", [meta])]
    return []


def literal_values(annotation: Any) -> tuple[Any, ...]:
    """The values a Literal allows, or a union of Literals (`Status | Literal["scaling"]`)."""
    ann = _without_none(annotation)
    if get_origin(ann) is Literal:
        return get_args(ann)
    if get_origin(ann) in (Union, types.UnionType) and all(get_origin(a) is Literal for a in get_args(ann)):
        return tuple(v for a in get_args(ann) for v in get_args(a))
    return ()


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def nested_model(annotation: Any) -> tuple[type[BaseModel], Nesting] | None:
    """The model of a field holding an object ("single") or a list of objects ("list")."""
    ann = _without_none(annotation)
    if _is_model(ann):
        return ann, "single"
    if get_origin(ann) in (list, tuple) and _is_model(get_args(ann)[0]):
        return get_args(ann)[0], "list"
    return None


def tf_type(annotation: Any) -> tft.TfType:
    """The Terraform type of a pydantic field's annotation (objects: see `NestedAttribute`)."""
    ann = _without_none(annotation)
    origin = get_origin(ann)
    if ann is bool:
        return tft.Bool()
    if ann in (int, float):
        return tft.Number()
    literal = literal_values(ann)
    if ann in (str, SecretStr) or (literal and all(isinstance(v, str) for v in literal)):
        return tft.String()
    if origin in (list, tuple):
        return tft.List(tf_type(get_args(ann)[0]))
    if origin in (set, frozenset):
        return tft.Set(tf_type(get_args(ann)[0]))
    if origin is dict:
        return tft.Map(tf_type(get_args(ann)[1]))
    raise TypeError(f"no Terraform type for {annotation!r}")


def conform(annotation: Any, value: Any) -> Any:
    """An API value shaped as the Terraform value of that field: objects keep exactly the
    model's fields (Terraform wants every attribute of an object, and no others)."""
    nested = nested_model(annotation)
    if nested is None or value is None:
        return value
    model, nesting = nested

    def one(item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        # A camelCase API (CamelModel) answers with the fields' aliases.
        return {
            name: conform(info.annotation, item.get(name, item.get(info.alias) if info.alias else None))
            for name, info in model.model_fields.items()
        }

    return one(value) if nesting == "single" else [one(item) for item in value]


class Object(tft.TfType):
    """An object with named attributes, a dict in Python: the value of a nested attribute.

    `defaults` are what the API stores for attributes a configuration leaves null; decoding
    fills them in. The `tf` package plans a create without asking the resource, and a planned
    null that the API then answers with its default would be an inconsistent result, so this
    is where a nested default is made part of the plan (top-level ones are `Attribute.default`).
    """

    def __init__(self, attributes: Mapping[str, tft.TfType], defaults: Mapping[str, Any]) -> None:
        self.attributes = dict(attributes)
        self.defaults = dict(defaults)

    def encode(self, value: Any) -> Any:
        if value is None or value is Unknown:
            return value
        return {name: t.encode(value.get(name)) for name, t in self.attributes.items()}

    def decode(self, value: Any) -> Any:
        if value is None or value is Unknown:
            return value
        out = {
            name: v if v is Unknown else t.decode(v)
            for name, t in self.attributes.items()
            for v in (value.get(name),)
        }
        return {
            name: self.defaults[name] if v is None and name in self.defaults else v for name, v in out.items()
        }

    def tf_type(self) -> bytes:
        types_ = {name: json.loads(t.tf_type()) for name, t in self.attributes.items()}
        return json.dumps(["object", types_], separators=(",", ":")).encode()


_NESTING = {"single": pb.Schema.Object.NestingMode.SINGLE, "list": pb.Schema.Object.NestingMode.LIST}


class NestedAttribute(Attribute):
    """An attribute holding an object, or a list of objects, whose own attributes are each
    required, optional or computed (protocol v6 nested attributes): `quota = { ... }`."""

    def __init__(self, name: str, attributes: list[Attribute], nesting: Nesting, **kwargs: Any) -> None:
        defaults = {a.name: a.default for a in attributes if a.computed and _known_default(a.default)}
        obj = Object({a.name: a.type for a in attributes}, defaults)
        super().__init__(name, obj if nesting == "single" else tft.List(obj), **kwargs)
        self.attributes = attributes
        self.nesting = nesting

    def to_pb(self) -> pb.Schema.Attribute:
        message = super().to_pb()
        message.ClearField("type")  # a nested attribute has a nested_type instead
        message.nested_type.CopyFrom(
            pb.Schema.Object(attributes=[a.to_pb() for a in self.attributes], nesting=_NESTING[self.nesting])
        )
        return message


def _known_default(value: Any) -> bool:
    return value is not None and value is not Unknown


def is_secret(annotation: Any) -> bool:
    return _without_none(annotation) is SecretStr


def field_at(model: type[BaseModel], path: tuple[str, ...]) -> FieldInfo:
    """The pydantic field at a dotted path through nested models (`endpoint.host`), by name or,
    for a camelCase answer, by alias (`testStatus`)."""
    fields = model.model_fields
    info = fields.get(path[0]) or next((f for f in fields.values() if f.alias == path[0]), None)
    if info is None:
        raise KeyError(f"{model.__name__} has no field {path[0]}")
    if len(path) == 1:
        return info
    nested = _without_none(info.annotation)
    if not _is_model(nested):
        raise TypeError(f"{model.__name__}.{path[0]} is not a model; cannot follow {'.'.join(path)}")
    return field_at(nested, path[1:])


_BOUNDS = {
    "ge": "at least {}",
    "gt": "greater than {}",
    "le": "at most {}",
    "lt": "less than {}",
    "min_length": "at least {} characters",
    "max_length": "at most {} characters",
}


def constraints(info: FieldInfo) -> dict[str, Any]:
    """ge/gt/le/lt, min/max length and pattern, from the field's annotated-types metadata."""
    found: dict[str, Any] = {}
    for meta in (*info.metadata, *_inner_metadata(info.annotation)):
        for name in (*_BOUNDS, "pattern"):
            value = getattr(meta, name, None)
            if value is not None:
                found[name] = value
    return found


def default_of(info: FieldInfo) -> Any:
    """The field's default, or Unknown when it has none a plan could show. A default made by a
    model class (`Field(default_factory=TenantQuota)`) is that model's defaults."""
    factory = info.default_factory
    if isinstance(factory, type) and issubclass(factory, BaseModel):
        return factory().model_dump()
    if info.is_required() or factory is not None or info.default is None:
        return Unknown
    return info.default


def has_default_value(info: FieldInfo) -> bool:
    """An optional field the API fills in when absent (its default is not null)."""
    return not info.is_required() and (info.default_factory is not None or info.default is not None)


def describe(info: FieldInfo, fallback: str = "", with_default: bool = True) -> str:
    """The field's description, with its allowed values, bounds and (for arguments) default."""
    parts = [(info.description or fallback).strip()]
    literal = literal_values(info.annotation)
    if literal:
        parts.append("One of " + ", ".join(f"`{v}`" for v in literal) + ".")
    found = constraints(info)
    if "ge" in found and "le" in found:
        parts.append(f"Between {found.pop('ge')} and {found.pop('le')}.")
    bounds = [text.format(found[name]) for name, text in _BOUNDS.items() if name in found]
    if bounds:
        parts.append(" and ".join(bounds).capitalize() + ".")
    if "pattern" in found:
        parts.append(f"Must match `{found['pattern']}`.")
    default = default_of(info)
    # A nested object's default is its attributes' defaults, each described with its attribute.
    if with_default and default is not Unknown and nested_model(info.annotation) is None:
        parts.append(f"Defaults to `{json.dumps(default)}`.")
    return " ".join(p for p in parts if p)


def argument_attribute(
    name: str,
    info: FieldInfo,
    *,
    requires_replace: bool = False,
    generated: bool = False,
    fallback: str = "",
) -> Attribute:
    """An argument from a create-model field: required unless it has a default; an optional one
    is also computed when the API fills it in (a default that is not null, or `generated`), so
    that its value is planned; a nullable one is not, so that removing it from the
    configuration sets it back to null."""
    required = info.is_required()
    kwargs: dict[str, Any] = {
        "description": describe(info, fallback),
        "required": required,
        "optional": not required,
        "computed": has_default_value(info) or generated,
        "sensitive": is_secret(info.annotation),
        "requires_replace": requires_replace,
        "default": default_of(info),
    }
    nested = nested_model(info.annotation)
    if nested is None:
        return Attribute(name, tf_type(info.annotation), **kwargs)
    model, nesting = nested
    children = [argument_attribute(n, f) for n, f in model.model_fields.items()]
    return NestedAttribute(name, children, nesting, **kwargs)


def read_only_attribute(
    name: str, info: FieldInfo, *, sensitive: bool = False, fallback: str = ""
) -> Attribute:
    """A computed attribute of a field's value, objects included."""
    kwargs: dict[str, Any] = {
        "description": describe(info, fallback, with_default=False),
        "computed": True,
        "sensitive": sensitive or is_secret(info.annotation),
    }
    nested = nested_model(info.annotation)
    if nested is None:
        return Attribute(name, tf_type(info.annotation), **kwargs)
    model, nesting = nested
    children = [read_only_attribute(n, f) for n, f in model.model_fields.items()]
    return NestedAttribute(name, children, nesting, **kwargs)


def computed_attribute(model: type[BaseModel], computed: Computed) -> Attribute:
    """A `Computed` of a response model; with `items`, a list of objects of those attributes."""
    info = field_at(model, computed.path)
    if not computed.items:
        return read_only_attribute(
            computed.name, info, sensitive=computed.sensitive, fallback=computed.description
        )
    nested = nested_model(info.annotation)
    if nested is None or nested[1] != "list":
        raise TypeError(f"{model.__name__}.{computed.source or computed.name} is not a list of objects")
    children = [computed_attribute(nested[0], item) for item in computed.items]
    return NestedAttribute(
        computed.name,
        children,
        "list",
        description=describe(info, computed.description, with_default=False),
        computed=True,
        sensitive=computed.sensitive,
    )


def _id_attribute(spec: ResourceSpec, required: bool) -> Attribute:
    """Computed on a resource; on a data source, the required id of the object to read."""
    description = f"Id of the {spec.name.replace('_', ' ')} to read." if required else spec.id_description
    return Attribute("id", tft.String(), description=description, required=required, computed=not required)


def _parent_attributes(spec: ResourceSpec) -> list[Attribute]:
    """Parent ids: required, or optional where they are alternatives (exactly one is set)."""
    out = []
    for name, text in spec.parents.items():
        required = spec.required_parent(name)
        out.append(
            Attribute(
                name,
                tft.String(),
                description=text,
                required=required,
                optional=not required,
                requires_replace=True,
            )
        )
    return out


def _computed_attributes(spec: ResourceSpec, include_create_only: bool) -> list[Attribute]:
    return [
        computed_attribute(spec.response, c)
        for c in spec.computed
        if include_create_only or not c.create_only
    ]


def resource_schema(spec: ResourceSpec) -> Schema:
    """Arguments from the create model, then the computed attributes."""
    arguments = [
        argument_attribute(
            name,
            spec.create.model_fields[name],
            requires_replace=name in spec.force_new,
            generated=name in spec.generated,
            fallback=spec.descriptions.get(name, ""),
        )
        for name in spec.arguments
    ]
    return Schema(
        version=SCHEMA_VERSION,
        description=spec.description,
        attributes=[
            _id_attribute(spec, required=False),
            *_parent_attributes(spec),
            *arguments,
            *_computed_attributes(spec, include_create_only=True),
        ],
    )


def data_source_schema(spec: DataSourceSpec) -> Schema:
    """Look-up by id (and parent ids); every other attribute is computed. Values only the
    create response carries (passwords) are not available to a data source."""
    resource = spec.resource
    arguments = [
        read_only_attribute(
            name, resource.create.model_fields[name], fallback=resource.descriptions.get(name, "")
        )
        for name in resource.arguments
    ]
    return Schema(
        version=SCHEMA_VERSION,
        description=spec.description,
        attributes=[
            _id_attribute(resource, required=True),
            *_parent_attributes(resource),
            *arguments,
            *_computed_attributes(resource, include_create_only=False),
        ],
    )
