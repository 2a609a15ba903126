//! Tool schemas as strict clients read them: plain JSON Schema 2020-12 in its most portable spelling.
//!
//! schemars writes a few things that are legal but that clients warn about on every
//! `tools/list`, and [`portable`] rewrites each into an equivalent schema (one that
//! accepts exactly the same values):
//!
//! - formats of its own on numbers (`uint64`, `uint32`, `uint`, `int64`, `double`, …), which
//!   2020-12 does not define (the official TypeScript client's Ajv warns `unknown format
//!   "uint64" ignored in schema`): dropped; the `type`, `minimum` and `maximum` beside them,
//!   which carry the meaning, stay;
//! - `"type": ["string", "null"]` for an `Option`: split into `anyOf` branches of one type
//!   each, as single-`type` dialects (Gemini's function declarations) need and the MCP
//!   Inspector advises;
//! - a subschema with no assertion at all (a `serde_json::Value` field: any JSON value):
//!   spelled out as `anyOf` over the six JSON types, so it states a type.

use rmcp::model::{JsonObject, Tool};
use serde_json::{Value, json};

/// The formats JSON Schema 2020-12 defines (Validation, section 7.3).
pub(crate) const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Keywords whose value is one subschema.
const SUBSCHEMA: &[&str] = &[
    "items",
    "contains",
    "not",
    "propertyNames",
    "if",
    "then",
    "else",
    "additionalProperties",
    "unevaluatedProperties",
    "additionalItems",
    "unevaluatedItems",
    "contentSchema",
];
/// Keywords whose value is an array of subschemas.
const SUBSCHEMA_ARRAYS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const SUBSCHEMA_MAPS: &[&str] = &[
    "properties",
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];

/// Keywords that restrict the values a schema accepts (assertions, applicators, references).
/// `if` counts only with `then` or `else`.
const CONSTRAINING: &[&str] = &[
    "type",
    "enum",
    "const",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "format",
    "contentMediaType",
    "contentEncoding",
    "contentSchema",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxContains",
    "minContains",
    "maxProperties",
    "minProperties",
    "required",
    "dependentRequired",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "items",
    "prefixItems",
    "contains",
    "additionalItems",
    "unevaluatedItems",
    "properties",
    "patternProperties",
    "additionalProperties",
    "unevaluatedProperties",
    "propertyNames",
    "dependentSchemas",
    "dependencies",
    "$ref",
    "$dynamicRef",
    "$recursiveRef",
];

/// Keywords that describe a schema or its document rather than the value: they stay on a
/// schema whose `type` list is split into branches.
const DESCRIBING: &[&str] = &[
    "$schema",
    "$id",
    "$anchor",
    "$dynamicAnchor",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords that only ever hold for values of some types, and those types.
const TYPE_SPECIFIC: &[(&[&str], &[&str])] = &[
    (
        &["integer", "number"],
        &[
            "multipleOf",
            "maximum",
            "exclusiveMaximum",
            "minimum",
            "exclusiveMinimum",
        ],
    ),
    (
        &["string"],
        &[
            "maxLength",
            "minLength",
            "pattern",
            "format",
            "contentEncoding",
            "contentMediaType",
            "contentSchema",
        ],
    ),
    (
        &["array"],
        &[
            "items",
            "prefixItems",
            "contains",
            "maxContains",
            "minContains",
            "maxItems",
            "minItems",
            "uniqueItems",
            "additionalItems",
            "unevaluatedItems",
        ],
    ),
    (
        &["object"],
        &[
            "properties",
            "patternProperties",
            "additionalProperties",
            "unevaluatedProperties",
            "propertyNames",
            "required",
            "dependentRequired",
            "dependentSchemas",
            "dependencies",
            "maxProperties",
            "minProperties",
        ],
    ),
];

/// Every JSON value is of one of these types (`integer` is a `number`).
const ANY_TYPE: &[&str] = &["object", "array", "string", "number", "boolean", "null"];

/// `tool` with its input and output schema rewritten as the module describes.
pub fn portable(tool: &mut Tool) {
    rewrite(std::sync::Arc::make_mut(&mut tool.input_schema));
    if let Some(output) = tool.output_schema.as_mut() {
        rewrite(std::sync::Arc::make_mut(output));
    }
}

/// Calls `visit` on every subschema of `schema` that is an object, with its place.
fn each_subschema(schema: &mut JsonObject, mut visit: impl FnMut(&mut JsonObject)) {
    for (keyword, value) in schema.iter_mut() {
        let keyword = keyword.as_str();
        let children: Vec<&mut Value> = if SUBSCHEMA_MAPS.contains(&keyword) {
            value
                .as_object_mut()
                .map(|map| map.values_mut().collect())
                .unwrap_or_default()
        } else if SUBSCHEMA_ARRAYS.contains(&keyword) || (keyword == "items" && value.is_array()) {
            value
                .as_array_mut()
                .map(|items| items.iter_mut().collect())
                .unwrap_or_default()
        } else if SUBSCHEMA.contains(&keyword) {
            vec![value]
        } else {
            Vec::new()
        };
        for child in children {
            if let Value::Object(child) = child {
                visit(child);
            }
        }
    }
}

fn rewrite(schema: &mut JsonObject) {
    each_subschema(schema, |child| {
        rewrite(child);
        if !constrains(child) {
            child.insert("anyOf".into(), any_type());
        }
    });
    if schema
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|format| !STANDARD_FORMATS.contains(&format))
    {
        schema.remove("format");
    }
    split_type_list(schema);
}

fn constrains(schema: &JsonObject) -> bool {
    schema
        .keys()
        .any(|keyword| CONSTRAINING.contains(&keyword.as_str()))
        || (schema.contains_key("if")
            && (schema.contains_key("then") || schema.contains_key("else")))
}

fn any_type() -> Value {
    Value::Array(ANY_TYPE.iter().map(|ty| json!({ "type": ty })).collect())
}

/// `{"type": ["integer", "null"], "minimum": 0, "description": d}` becomes
/// `{"description": d, "anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]}`: each
/// branch keeps the keywords that can apply to its type, the describing ones stay outside.
fn split_type_list(schema: &mut JsonObject) {
    let Some(Value::Array(types)) = schema.get("type") else {
        return;
    };
    let types: Vec<String> = types
        .iter()
        .filter_map(|ty| ty.as_str().map(str::to_owned))
        .collect();
    match types.as_slice() {
        [] => {}
        [single] => {
            schema.insert("type".into(), Value::String(single.clone()));
        }
        _ => {
            let (kept, moved): (JsonObject, JsonObject) = std::mem::take(schema)
                .into_iter()
                .filter(|(keyword, _)| keyword != "type")
                .partition(|(keyword, _)| DESCRIBING.contains(&keyword.as_str()));
            let branches = types
                .iter()
                .map(|ty| {
                    let mut branch = JsonObject::new();
                    branch.insert("type".into(), Value::String(ty.clone()));
                    for (keyword, value) in &moved {
                        if applies_to(keyword, ty) {
                            branch.insert(keyword.clone(), value.clone());
                        }
                    }
                    Value::Object(branch)
                })
                .collect();
            *schema = kept;
            schema.insert("anyOf".into(), Value::Array(branches));
        }
    }
}

/// Whether `keyword` can reject a value of type `ty` (a type-specific keyword holds for
/// every value of another type).
fn applies_to(keyword: &str, ty: &str) -> bool {
    TYPE_SPECIFIC
        .iter()
        .find(|(_, keywords)| keywords.contains(&keyword))
        .is_none_or(|(types, _)| types.contains(&ty))
}

/// What a strict client or the MCP Inspector would report of `tools`' schemas: formats 2020-12
/// does not define, `type` lists, and subschemas that assert nothing. Each is named by tool,
/// schema and JSON pointer.
pub fn portability_problems(tools: &[Tool]) -> Vec<String> {
    fn walk(schema: &JsonObject, at: &str, found: &mut Vec<String>) {
        if let Some(format) = schema.get("format").and_then(Value::as_str)
            && !STANDARD_FORMATS.contains(&format)
        {
            found.push(format!("{at}: format {format:?} is not JSON Schema's"));
        }
        if schema.get("type").is_some_and(Value::is_array) {
            found.push(format!("{at}: type is a list"));
        }
        let mut schema = schema.clone();
        let mut children = Vec::new();
        each_subschema(&mut schema, |child| children.push(child.clone()));
        for (index, child) in children.iter().enumerate() {
            let at = format!("{at}/<subschema {index}>");
            if !constrains(child) {
                found.push(format!(
                    "{at}: asserts nothing ({})",
                    Value::Object(child.clone())
                ));
            }
            walk(child, &at, found);
        }
    }
    let mut found = Vec::new();
    for tool in tools {
        walk(
            &tool.input_schema,
            &format!("{} inputSchema", tool.name),
            &mut found,
        );
        if let Some(output) = &tool.output_schema {
            walk(output, &format!("{} outputSchema", tool.name), &mut found);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> JsonObject {
        match value {
            Value::Object(map) => map,
            _ => panic!("an object"),
        }
    }

    fn rewritten(schema: Value) -> Value {
        let mut schema = object(schema);
        rewrite(&mut schema);
        Value::Object(schema)
    }

    #[test]
    fn formats_json_schema_does_not_define_are_dropped_and_the_bounds_stay() {
        assert_eq!(
            rewritten(json!({
                "type": "object",
                "properties": {
                    "size": { "type": "integer", "format": "uint64", "minimum": 0 },
                    "limit": { "type": "integer", "format": "uint32", "minimum": 0, "maximum": 4_294_967_295_u64 },
                    "ms": { "type": "number", "format": "double" },
                    "at": { "type": "string", "format": "date-time" },
                    "format": { "type": "string", "default": { "format": "uint64" } }
                },
                "$defs": { "n": { "type": "integer", "format": "int64" } }
            })),
            json!({
                "type": "object",
                "properties": {
                    "size": { "type": "integer", "minimum": 0 },
                    "limit": { "type": "integer", "minimum": 0, "maximum": 4_294_967_295_u64 },
                    "ms": { "type": "number" },
                    "at": { "type": "string", "format": "date-time" },
                    "format": { "type": "string", "default": { "format": "uint64" } }
                },
                "$defs": { "n": { "type": "integer" } }
            })
        );
    }

    #[test]
    fn a_type_list_becomes_branches_that_keep_what_applies_to_them() {
        assert_eq!(
            rewritten(json!({
                "type": "object",
                "properties": {
                    "version": {
                        "description": "v",
                        "type": ["integer", "null"],
                        "format": "uint64",
                        "minimum": 0,
                        "default": null
                    },
                    "at": { "type": ["string", "null"], "format": "date-time" },
                    "tag": { "type": ["string", "null"], "enum": ["a", null] },
                    "only": { "type": ["string"] }
                }
            })),
            json!({
                "type": "object",
                "properties": {
                    "version": {
                        "description": "v",
                        "default": null,
                        "anyOf": [{ "type": "integer", "minimum": 0 }, { "type": "null" }]
                    },
                    "at": {
                        "anyOf": [{ "type": "string", "format": "date-time" }, { "type": "null" }]
                    },
                    "tag": {
                        "anyOf": [
                            { "type": "string", "enum": ["a", null] },
                            { "type": "null", "enum": ["a", null] }
                        ]
                    },
                    "only": { "type": "string" }
                }
            })
        );
    }

    #[test]
    fn a_subschema_that_asserts_nothing_names_every_type() {
        let any = json!({
            "description": "Any JSON value.",
            "anyOf": [
                { "type": "object" }, { "type": "array" }, { "type": "string" },
                { "type": "number" }, { "type": "boolean" }, { "type": "null" }
            ]
        });
        assert_eq!(
            rewritten(json!({
                "type": "object",
                "properties": {
                    "value": { "description": "Any JSON value." },
                    "list": { "type": "array", "items": { "description": "Any JSON value." } },
                    "ref": { "$ref": "#/$defs/x" },
                    "when": { "if": { "required": ["a"] }, "then": { "required": ["b"] } }
                },
                "required": ["value"]
            })),
            json!({
                "type": "object",
                "properties": {
                    "value": any,
                    "list": { "type": "array", "items": any },
                    "ref": { "$ref": "#/$defs/x" },
                    "when": { "if": { "required": ["a"] }, "then": { "required": ["b"] } }
                },
                "required": ["value"]
            })
        );
    }

    #[test]
    fn problems_are_reported_until_rewritten() {
        let mut tool = Tool::new(
            "t",
            "",
            object(json!({
                "type": "object",
                "properties": {
                    "n": { "type": ["integer", "null"], "format": "uint64", "minimum": 0 },
                    "value": { "description": "anything" }
                }
            })),
        )
        .with_raw_output_schema(std::sync::Arc::new(object(json!({
            "type": "object",
            "properties": { "size": { "type": "integer", "format": "uint" } }
        }))));
        let problems = portability_problems(std::slice::from_ref(&tool));
        assert_eq!(problems.len(), 4, "{problems:#?}");
        portable(&mut tool);
        assert_eq!(
            portability_problems(std::slice::from_ref(&tool)),
            Vec::<String>::new()
        );
    }
}
