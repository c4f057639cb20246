"""The pgfleet Terraform provider (protocol v6, on the `tf` package).

Each resource is one API object, described declaratively in `catalog.py`; its Terraform
schema is generated from the same pydantic models the API validates with (`schema.py`), and
one generic implementation (`resources.py`) runs every resource's create/read/update/delete.
"""

from __future__ import annotations

from pgfleet import __version__

NAMESPACE = "pgfleet"
TYPE = "pgfleet"
SOURCE = f"{NAMESPACE}/{TYPE}"
SOURCE_ADDRESS = f"registry.terraform.io/{SOURCE}"
TYPE_PREFIX = f"{TYPE}_"
VERSION = __version__
