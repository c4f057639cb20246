"""Just enough HCL to write example configurations the way `terraform fmt` would."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Ref:
    """An expression written as is (`pgfleet_instance.example.id`), not as a string."""

    expression: str


def value(v: object) -> str:
    if isinstance(v, Ref):
        return v.expression
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return json.dumps(v)
    if isinstance(v, str):
        # A literal "${" would start an interpolation.
        return json.dumps(v).replace("${", "$${")
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"no HCL literal for {v!r}")


def block(kind: str, labels: tuple[str, ...], attributes: Mapping[str, object], indent: str = "") -> str:
    """A block of attributes with their `=` aligned, as `terraform fmt` aligns them."""
    head = " ".join([kind, *(json.dumps(label) for label in labels)])
    if not attributes:
        return f"{indent}{head} {{}}\n"
    width = max(len(name) for name in attributes)
    lines = [f"{indent}  {name.ljust(width)} = {value(v)}" for name, v in attributes.items()]
    return f"{indent}{head} {{\n" + "\n".join(lines) + f"\n{indent}}}\n"


def required_providers(name: str, source: str) -> str:
    return (
        "terraform {\n"
        "  required_providers {\n"
        f"    {name} = {{\n"
        f"      source = {value(source)}\n"
        "    }\n"
        "  }\n"
        "}\n"
    )
