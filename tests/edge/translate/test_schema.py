"""JSON Schema conversions: Gemini sanitising (case 30), Gemini → JSON Schema (case 44),
closed objects for Anthropic structured output (case 43)."""

from __future__ import annotations

from google.genai import types as gtypes

from bytespike_edge.translate.schema import (
    from_gemini,
    gemini_parameters,
    object_schema,
    strict_objects,
    to_gemini,
)

MESSY = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "path": {"type": "string", "format": "uri", "examples": ["/tmp"]},
        "note": {"type": ["string", "null"], "description": "optional"},
        "mode": {"const": "fast"},
        "level": {"type": "integer", "enum": [1, 2]},
        "when": {"type": "string", "format": "date-time"},
        "target": {"$ref": "#/$defs/Target"},
        "tags": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    },
    "required": ["path", "ghost"],
    "$defs": {
        "Target": {
            "type": "object",
            "properties": {"host": {"type": "string"}, "port": {"type": "integer"}},
            "required": ["host"],
            "propertyNames": {"pattern": "^[a-z]+$"},
        }
    },
}


def test_to_gemini_sanitises_json_schema() -> None:
    assert to_gemini(MESSY) == {
        "type": "OBJECT",
        "properties": {
            "path": {"type": "STRING"},
            "note": {"type": "STRING", "nullable": True, "description": "optional"},
            "mode": {"type": "STRING", "enum": ["fast"]},
            "level": {"type": "INTEGER", "description": "One of: 1, 2"},
            "when": {"type": "STRING", "format": "date-time"},
            "target": {
                "type": "OBJECT",
                "properties": {"host": {"type": "STRING"}, "port": {"type": "INTEGER"}},
                "required": ["host"],
            },
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "nullable": True}},
        },
        "required": ["path"],
    }


def test_sanitised_schema_is_accepted_by_geminis_schema_type() -> None:
    # google-genai's Schema forbids unknown fields: a leftover JSON-Schema keyword fails here.
    schema = gtypes.Schema.model_validate(to_gemini(MESSY))
    assert schema.properties is not None
    assert schema.properties["note"].nullable is True


def test_recursive_ref_is_cut() -> None:
    tree = {
        "type": "object",
        "properties": {"child": {"$ref": "#/$defs/Node"}},
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
    }
    converted = to_gemini(tree)
    gtypes.Schema.model_validate(converted)
    depth = 0
    node = converted
    while "properties" in node:
        node = node["properties"]["child"]
        depth += 1
    assert node == {"type": "OBJECT"}
    assert depth > 10


def test_all_of_is_merged_and_one_of_becomes_any_of() -> None:
    schema = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"oneOf": [{"type": "string"}, {"type": "number"}]}}},
        ]
    }
    assert to_gemini(schema) == {
        "type": "OBJECT",
        "properties": {
            "a": {"type": "STRING"},
            "b": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]},
        },
        "required": ["a"],
    }


def test_argument_less_function_omits_parameters() -> None:
    assert gemini_parameters({"type": "object", "properties": {}}) is None
    assert gemini_parameters({"type": "object"}) is None
    assert gemini_parameters(None) is None
    assert gemini_parameters({"type": "object", "properties": {"q": {"type": "string"}}}) == {
        "type": "OBJECT",
        "properties": {"q": {"type": "STRING"}},
    }


def test_from_gemini_openapi_schema() -> None:
    gemini = {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING", "nullable": True},
            "scores": {"type": "ARRAY", "items": {"type": "NUMBER"}, "max_items": 3},
            "either": {"any_of": [{"type": "STRING"}, {"type": "INTEGER"}], "nullable": True},
        },
        "required": ["name"],
        "propertyOrdering": ["name", "scores"],
    }
    assert from_gemini(gemini) == {
        "type": "object",
        "properties": {
            "name": {"type": ["string", "null"]},
            "scores": {"type": "array", "items": {"type": "number"}, "maxItems": 3},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
        },
        "required": ["name"],
    }


def test_strict_objects_closes_every_object_but_not_values() -> None:
    schema = {
        "type": "object",
        "properties": {
            "inner": {
                "type": "object",
                "properties": {"x": {"type": "string", "default": {"type": "object"}}},
            },
            "list": {"type": "array", "items": {"properties": {"y": {"type": "number"}}}},
            "properties": {"type": "string"},
        },
        "additionalProperties": True,
    }
    assert strict_objects(schema) == {
        "type": "object",
        "properties": {
            "inner": {
                "type": "object",
                "properties": {"x": {"type": "string", "default": {"type": "object"}}},
                "additionalProperties": False,
            },
            "list": {
                "type": "array",
                "items": {"properties": {"y": {"type": "number"}}, "additionalProperties": False},
            },
            "properties": {"type": "string"},
        },
        "additionalProperties": False,
    }


def test_object_schema_defaults() -> None:
    assert object_schema(None) == {"type": "object", "properties": {}}
    assert object_schema({"properties": {"a": {}}}) == {"type": "object", "properties": {"a": {}}}
