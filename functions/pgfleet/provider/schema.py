"""Terraform schemas generated from the API's pydantic models.

The API validates requests with these models and publishes them in its OpenAPI document; the
provider derives its attribute types, required/optional, defaults and descriptions from the
very same fields, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from tf import types as tft
from tf.schema import Attribute, Schema
from tf.types import Unknown

from pgfleet.provider.spec import DataSourceSpec, ResourceSpec

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
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def tf_type(annotation: Any) -> tft.TfType:
    """The Terraform type of a pydantic field's annotation."""
    ann = _without_none(annotation)
    origin = get_origin(ann)
    if ann is bool:
        return tft.Bool()
    if ann in (int, float):
        return tft.Number()
    if ann in (str, SecretStr) or (origin is Literal and all(isinstance(a, str) for a in get_args(ann))):
        return tft.String()
    if origin in (list, tuple):
        return tft.List(tf_type(get_args(ann)[0]))
    if origin in (set, frozenset):
        return tft.Set(tf_type(get_args(ann)[0]))
    if origin is dict:
        return tft.Map(tf_type(get_args(ann)[1]))
    # Nested objects are flattened into computed attributes with dotted sources instead.
    raise TypeError(f"no Terraform type for {annotation!r}")


def is_secret(annotation: Any) -> bool:
    return _without_none(annotation) is SecretStr


def field_at(model: type[BaseModel], path: tuple[str, ...]) -> FieldInfo:
    """The pydantic field at a dotted path through nested models (`endpoint.host`)."""
    info = model.model_fields[path[0]]
    if len(path) == 1:
        return info
    nested = _without_none(info.annotation)
    if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
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
    for meta in info.metadata:
        for name in (*_BOUNDS, "pattern"):
            value = getattr(meta, name, None)
            if value is not None:
                found[name] = value
    return found


def default_of(info: FieldInfo) -> Any:
    """The field's default, or Unknown when it has none a plan could show."""
    if info.is_required() or info.default_factory is not None or info.default is None:
        return Unknown
    return info.default


def describe(info: FieldInfo, fallback: str = "", with_default: bool = True) -> str:
    """The field's description, with its allowed values, bounds and (for arguments) default."""
    parts = [(info.description or fallback).strip()]
    literal = _without_none(info.annotation)
    if get_origin(literal) is Literal:
        parts.append("One of " + ", ".join(f"`{v}`" for v in get_args(literal)) + ".")
    found = constraints(info)
    if "ge" in found and "le" in found:
        parts.append(f"Between {found.pop('ge')} and {found.pop('le')}.")
    bounds = [text.format(found[name]) for name, text in _BOUNDS.items() if name in found]
    if bounds:
        parts.append(" and ".join(bounds).capitalize() + ".")
    if "pattern" in found:
        parts.append(f"Must match `{found['pattern']}`.")
    default = default_of(info)
    if with_default and default is not Unknown:
        parts.append(f"Defaults to `{json.dumps(default)}`.")
    return " ".join(p for p in parts if p)


def _id_attribute(spec: ResourceSpec, required: bool) -> Attribute:
    """Computed on a resource; on a data source, the required id of the object to read."""
    description = f"Id of the {spec.name.replace('_', ' ')} to read." if required else spec.id_description
    return Attribute("id", tft.String(), description=description, required=required, computed=not required)


def _parent_attributes(spec: ResourceSpec) -> list[Attribute]:
    return [
        Attribute(name, tft.String(), description=text, required=True, requires_replace=True)
        for name, text in spec.parents.items()
    ]


def _computed_attributes(spec: ResourceSpec, include_create_only: bool) -> list[Attribute]:
    out = []
    for c in spec.computed:
        if c.create_only and not include_create_only:
            continue
        info = field_at(spec.response, c.path)
        out.append(
            Attribute(
                c.name,
                tf_type(info.annotation),
                description=describe(info, c.description, with_default=False),
                computed=True,
                sensitive=c.sensitive,
            )
        )
    return out


def resource_schema(spec: ResourceSpec) -> Schema:
    """Arguments from the create model (required unless it has a default; optional ones are
    also computed so the API's default is planned), then the computed attributes."""
    arguments = []
    for name, info in spec.create.model_fields.items():
        required = info.is_required()
        arguments.append(
            Attribute(
                name,
                tf_type(info.annotation),
                description=describe(info),
                required=required,
                optional=not required,
                computed=not required,
                sensitive=is_secret(info.annotation),
                requires_replace=name in spec.force_new,
                default=default_of(info),
            )
        )
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
        Attribute(
            name,
            tf_type(info.annotation),
            description=describe(info, with_default=False),
            computed=True,
            sensitive=is_secret(info.annotation),
        )
        for name, info in resource.create.model_fields.items()
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
