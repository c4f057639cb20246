"""Write `terraform-provider-schema/`: the provider's schema, examples and reference docs.

    python -m pgfleet.provider.generate            # rewrite the files
    python -m pgfleet.provider.generate --check    # exit 1 if a committed file is stale

`schema.json` has the shape `terraform providers schema -json` prints, so the end-to-end test
can compare it with what Terraform itself reads from the running provider.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tf.schema import Attribute, Schema

from pgfleet.provider import SOURCE_ADDRESS
from pgfleet.provider.catalog import DATA_SOURCES, RESOURCES
from pgfleet.provider.docs import data_source_doc, example_config, provider_doc, resource_doc
from pgfleet.provider.schema import NestedAttribute, data_source_schema, provider_schema, resource_schema

DEFAULT_OUT = Path(__file__).resolve().parents[3] / "terraform-provider-schema"


def _attribute_json(attribute: Attribute) -> dict[str, Any]:
    out: dict[str, Any]
    if isinstance(attribute, NestedAttribute):
        out = {
            "nested_type": {
                "attributes": {a.name: _attribute_json(a) for a in attribute.attributes},
                "nesting_mode": attribute.nesting,
            }
        }
    else:
        out = {"type": json.loads(attribute.type.tf_type())}
    if attribute.description:
        out["description"] = attribute.description
    out["description_kind"] = "markdown"
    for flag in ("required", "optional", "computed", "sensitive", "deprecated"):
        if getattr(attribute, flag):
            out[flag] = True
    return out


def _schema_json(schema: Schema) -> dict[str, Any]:
    block: dict[str, Any] = {"attributes": {a.name: _attribute_json(a) for a in schema.attributes}}
    if schema.description:
        block["description"] = schema.description
    block["description_kind"] = "markdown" if schema.description else "plain"
    return {"version": schema.version or 0, "block": block}


def schema_document() -> dict[str, Any]:
    """The provider's schemas as `terraform providers schema -json` shows them."""
    return {
        "format_version": "1.0",
        "provider_schemas": {
            SOURCE_ADDRESS: {
                "provider": _schema_json(provider_schema()),
                "resource_schemas": {r.type_name: _schema_json(resource_schema(r)) for r in RESOURCES},
                "data_source_schemas": {
                    d.type_name: _schema_json(data_source_schema(d)) for d in DATA_SOURCES
                },
            }
        },
    }


def rendered() -> dict[str, str]:
    """Every generated file, by path relative to the output directory."""
    files = {"schema.json": json.dumps(schema_document(), indent=2, sort_keys=True) + "\n"}
    files["docs/index.md"] = provider_doc(RESOURCES, DATA_SOURCES)
    for spec in RESOURCES:
        own = tuple(d for d in DATA_SOURCES if d.resource is spec)
        files[f"examples/{spec.type_name}/main.tf"] = example_config(spec, own, RESOURCES)
        files[f"docs/resources/{spec.name}.md"] = resource_doc(spec)
    for data in DATA_SOURCES:
        files[f"docs/data-sources/{data.name}.md"] = data_source_doc(data)
    return files


def stale(out: Path) -> list[str]:
    """Files under `out` that differ from what the generator writes (missing ones included)."""
    return sorted(
        name
        for name, text in rendered().items()
        if not (out / name).is_file() or (out / name).read_text() != text
    )


def write(out: Path) -> list[str]:
    """Write the files that changed; return their names."""
    changed = stale(out)
    for name, text in rendered().items():
        if name in changed:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(text)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pgfleet.provider.generate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale(args.out)
        for name in outdated:
            print(f"stale: {args.out / name}")
        return 1 if outdated else 0
    for name in write(args.out):
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
