"""Just enough HCL to write example configurations the way `terraform fmt` would."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Ref:
    """An expression written as is (`pgfleet_instance.example.id`), not as a string."""

    expression: str


def value(v: object, indent: str = "") -> str:
    """`v` as an HCL literal; an object spans lines, its attributes one level below `indent`."""
    if v is None:
        return "null"
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
        return "[" + ", ".join(value(x, indent) for x in v) + "]"
    if isinstance(v, Mapping):
        if not v:
            return "{}"
        return "{\n" + _attributes(v, indent + "  ") + f"\n{indent}}}"
    raise TypeError(f"no HCL literal for {v!r}")


def _attributes(attributes: Mapping[str, object], indent: str) -> str:
    """One `name = value` line per attribute, `=` aligned as `terraform fmt` aligns them: over
    each run of one-line values (a value spanning lines ends the run and is not aligned)."""
    rendered = [(name, value(v, indent)) for name, v in attributes.items()]
    lines: list[str] = []
    run: list[tuple[str, str]] = []

    def flush() -> None:
        width = max((len(name) for name, _ in run), default=0)
        lines.extend(f"{indent}{name.ljust(width)} = {text}" for name, text in run)
        run.clear()

    for name, text in rendered:
        if "\n" in text:
            flush()
            lines.append(f"{indent}{name} = {text}")
        else:
            run.append((name, text))
    flush()
    return "\n".join(lines)


def block(kind: str, labels: tuple[str, ...], attributes: Mapping[str, object], indent: str = "") -> str:
    """A block of attributes, formatted as `terraform fmt` writes it."""
    head = " ".join([kind, *(json.dumps(label) for label in labels)])
    if not attributes:
        return f"{indent}{head} {{}}\n"
    return f"{indent}{head} {{\n" + _attributes(attributes, indent + "  ") + f"\n{indent}}}\n"


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
