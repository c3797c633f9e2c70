"""JSON Schemas published by ncbench: ``result.schema.json`` describes a result file (and a submission).

The schema is the one definition of what a result holds; ``ncbench submit`` validates submissions
against it, and ``results.read_result`` validates every local result file against it too, relaxed
only where a local file legitimately differs (``LOCAL``: a failed run or a tuning trial has no test
block, meta or env). Its ``name`` pattern is the one rule for the identity fields that become folder
and file names (method, tag, backbone, dataset, protocol version); it ends in ``(?!\n)$`` because
the validator searches with ``re.search``, where ``$`` alone also matches before a final newline.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

LOCAL_REQUIRED = ["schema_version", "status", "identity", "config", "config_hash"]
LOCAL_IDENTITY = ["method", "backbone", "dataset", "noise_ratio", "seed", "protocol_version"]


@functools.cache
def _published() -> str:
    return resources.files("ncbench.schema").joinpath("result.schema.json").read_text(encoding="utf-8")


def result_schema() -> dict[str, Any]:
    """The published result schema (a fresh copy)."""
    return json.loads(_published())


def _variant(local: bool) -> dict[str, Any]:
    schema = result_schema()
    # per-query ranks run to tens of thousands of integers: ``results.rank_problems`` checks them
    # (type, range, lengths) in a fraction of the time the validator needs
    schema["$defs"]["ranks"] = {"type": "array"}
    if local:
        schema["required"] = LOCAL_REQUIRED
        schema["properties"]["status"] = {"type": "string"}  # failed runs are results too
        schema["properties"]["identity"] = copy.deepcopy(schema["properties"]["identity"])
        schema["properties"]["identity"]["required"] = LOCAL_IDENTITY
    return schema


@functools.cache
def _validator(local: bool):
    import jsonschema

    return jsonschema.Draft202012Validator(_variant(local))


def schema_errors(data: Any, local: bool = False, limit: int = 5) -> list[str]:
    """What in ``data`` breaks the schema (``local``: as ncbench's own results folder may hold it),
    one line each, the first ``limit`` of them."""
    errors = sorted(_validator(local).iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    out = []
    for e in errors[:limit]:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        out.append(f"schema: {where}: {e.message}")
    if len(errors) > limit:
        out.append(f"schema: … and {len(errors) - limit} more")
    return out
