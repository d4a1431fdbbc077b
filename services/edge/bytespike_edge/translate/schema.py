"""JSON Schema conversions between the vendors (reference §6.3, §6.7, §9 item 8).

Gemini's `parameters`/`responseSchema` accept an OpenAPI 3.0 subset: upper-case types,
`nullable`, no `$ref`, no `additionalProperties`, string-only enums, a few formats.
`to_gemini` sanitises plain JSON Schema into it; `from_gemini` goes back. `strict_objects`
closes every object for Anthropic structured output.
"""

from __future__ import annotations

from typing import Any

from bytespike_edge.translate.ir import JSON

_GEMINI_KEYS = frozenset(
    {
        "description", "title", "nullable", "enum", "maxItems", "minItems", "required",
        "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
        "default", "minimum", "maximum", "propertyOrdering",
    }
)  # fmt: skip
_GEMINI_FORMATS = {
    "STRING": {"enum", "date-time"},
    "INTEGER": {"int32", "int64"},
    "NUMBER": {"float", "double"},
}
_SNAKE_TO_CAMEL = {
    "any_of": "anyOf", "max_items": "maxItems", "min_items": "minItems",
    "max_length": "maxLength", "min_length": "minLength", "max_properties": "maxProperties",
    "min_properties": "minProperties", "property_ordering": "propertyOrdering",
}  # fmt: skip
_MAX_DEPTH = 32


def to_gemini(schema: JSON) -> JSON:
    """Sanitise a JSON Schema for Gemini's OpenAPI-subset `Schema`."""
    defs: JSON = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            defs.update(schema[key])
    return _to_gemini(schema, defs, 0)


def gemini_parameters(schema: JSON | None) -> JSON | None:
    """Tool parameters for Gemini; None for an argument-less function, which must omit them
    (an OBJECT with empty `properties` is rejected, reference §6.3)."""
    if not schema:
        return None
    converted = to_gemini(schema)
    if converted.get("type") == "OBJECT" and not converted.get("properties"):
        return None
    return converted


def _resolve(node: JSON, defs: JSON) -> JSON | None:
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return None
    name = ref.rsplit("/", 1)[-1]
    target = defs.get(name)
    if not isinstance(target, dict):
        return {}
    merged = dict(target)
    if isinstance(node.get("description"), str):
        merged["description"] = node["description"]
    return merged


def _merge_all_of(node: JSON, defs: JSON) -> JSON:
    merged: JSON = {k: v for k, v in node.items() if k != "allOf"}
    properties: JSON = dict(_as_dict(merged.get("properties")))
    required: list[Any] = list(_as_list(merged.get("required")))
    for item in node["allOf"]:
        if not isinstance(item, dict):
            continue
        sub = _resolve(item, defs) or item
        properties.update(_as_dict(sub.get("properties")))
        required.extend(_as_list(sub.get("required")))
        for key, value in sub.items():
            if key not in ("properties", "required"):
                merged.setdefault(key, value)
    if properties:
        merged["properties"] = properties
    if required:
        merged["required"] = list(dict.fromkeys(r for r in required if isinstance(r, str)))
    return merged


def _as_dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _to_gemini(node: Any, defs: JSON, depth: int) -> JSON:
    if not isinstance(node, dict):
        return {}
    if depth > _MAX_DEPTH:
        # A recursive $ref: cut the cycle with an open object.
        return {"type": "OBJECT"}
    resolved = _resolve(node, defs)
    if resolved is not None:
        return _to_gemini(resolved, defs, depth + 1)
    if isinstance(node.get("allOf"), list):
        node = _merge_all_of(node, defs)
    out: JSON = {k: v for k, v in node.items() if k in _GEMINI_KEYS}
    _set_type(node, out, defs, depth)
    _set_enum(node, out)
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _GEMINI_FORMATS.get(out.get("type", ""), ()):
        out["format"] = fmt
    props = node.get("properties")
    if isinstance(props, dict) and props:
        out["properties"] = {k: _to_gemini(v, defs, depth + 1) for k, v in props.items()}
        if out.get("type") is None:
            out["type"] = "OBJECT"
    else:
        out.pop("propertyOrdering", None)
    required = out.get("required")
    if isinstance(required, list):
        known = out.get("properties") or {}
        kept = [r for r in required if isinstance(r, str) and r in known]
        if kept:
            out["required"] = kept
        else:
            out.pop("required")
    if "items" in node:
        out["items"] = _to_gemini(node["items"], defs, depth + 1)
        out.setdefault("type", "ARRAY")
    return out


def _set_type(node: JSON, out: JSON, defs: JSON, depth: int) -> None:
    kind = node.get("type")
    types = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []
    if "null" in types:
        out["nullable"] = True
    concrete = [t.upper() for t in types if isinstance(t, str) and t != "null"]
    if len(concrete) == 1:
        out["type"] = concrete[0]
    elif len(concrete) > 1:
        out["anyOf"] = [{"type": t} for t in concrete]
    variants = node.get("anyOf", node.get("oneOf"))
    if isinstance(variants, list):
        options = []
        for variant in variants:
            if isinstance(variant, dict) and variant.get("type") == "null":
                out["nullable"] = True
            else:
                options.append(_to_gemini(variant, defs, depth + 1))
        if len(options) == 1:
            out.update({k: v for k, v in options[0].items() if k not in out})
        elif options:
            out["anyOf"] = options


def _set_enum(node: JSON, out: JSON) -> None:
    values = node.get("enum")
    if "const" in node:
        values = [node["const"]]
    if not isinstance(values, list):
        out.pop("enum", None)
        return
    if out.get("type", "STRING") == "STRING" and all(isinstance(v, str) for v in values):
        out["enum"] = values
        out.setdefault("type", "STRING")
        return
    # Gemini enums are string-only; keep the constraint visible to the model instead.
    out.pop("enum", None)
    allowed = ", ".join(str(v) for v in values)
    described = out.get("description")
    out["description"] = f"{described} (one of: {allowed})" if described else f"One of: {allowed}"


def from_gemini(node: Any) -> JSON:
    """Gemini `Schema` (upper-case OpenAPI subset, either casing of keys) → JSON Schema."""
    if not isinstance(node, dict):
        return {}
    out: JSON = {}
    nullable = node.get("nullable") is True
    for raw_key, value in node.items():
        key = _SNAKE_TO_CAMEL.get(raw_key, str(raw_key))
        if key in ("nullable", "propertyOrdering"):
            continue
        if key == "type" and isinstance(value, str):
            kind = value.lower()
            out["type"] = [kind, "null"] if nullable and kind != "null" else kind
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {k: from_gemini(v) for k, v in value.items()}
        elif key == "items":
            out["items"] = from_gemini(value)
        elif key == "anyOf" and isinstance(value, list):
            out["anyOf"] = [from_gemini(v) for v in value]
        else:
            out[key] = value
    if nullable and "type" not in out and isinstance(out.get("anyOf"), list):
        out["anyOf"].append({"type": "null"})
    return out


def strict_objects(node: Any) -> Any:
    """A copy where every object schema has `additionalProperties: false` (Anthropic
    structured output accepts only closed objects, reference §6.7)."""
    if not isinstance(node, dict):
        return node
    out: JSON = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: strict_objects(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [strict_objects(sub) for sub in value]
        elif key in ("items", "not"):
            out[key] = strict_objects(value)
        else:
            out[key] = value
    kind = node.get("type")
    is_object = kind == "object" or (isinstance(kind, list) and "object" in kind)
    if is_object or isinstance(node.get("properties"), dict):
        out["additionalProperties"] = False
    return out


_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def object_schema(schema: JSON | None) -> JSON:
    """A tool input schema with the `type: object` root Anthropic requires."""
    if not schema:
        return {"type": "object", "properties": {}}
    if "type" not in schema:
        return {"type": "object", **schema}
    return schema
