//! CloudWatch Embedded Metric Format: the Lambda host's metrics, written as log lines.
//!
//! CloudWatch Logs turns each line into metric values, so the function needs no agent and
//! no `PutMetricData` call. EMF takes dimension values from the document's top-level
//! members, so one document can hold each metric under one set of label values only; an
//! invocation whose values differ in their labels (two store operations, say) is written
//! as a few documents, all at the end of the invocation. Every metric directive lists its
//! labels as one dimension set and the empty set as a second, so CloudWatch keeps both the
//! per-label series and the total (the one the dashboard and alarms read).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::metrics::{Sample, Unit};

/// EMF allows at most this many values per metric in one document.
const MAX_VALUES: usize = 100;

/// A metric's values under one set of label values.
struct Series {
    name: &'static str,
    unit: Unit,
    labels: Vec<(&'static str, String)>,
    values: Vec<f64>,
}

/// One EMF document being filled.
#[derive(Default)]
struct Document {
    dimensions: BTreeMap<&'static str, String>,
    series: Vec<Series>,
}

impl Document {
    fn accepts(&self, series: &Series) -> bool {
        !self.series.iter().any(|held| held.name == series.name)
            && series
                .labels
                .iter()
                .all(|(key, value)| self.dimensions.get(key).is_none_or(|held| held == value))
    }
}

/// The EMF lines for `samples`, under `namespace`, stamped `timestamp_ms` (Unix ms).
pub fn lines(namespace: &str, timestamp_ms: i64, samples: Vec<Sample>) -> Vec<String> {
    let mut documents: Vec<Document> = Vec::new();
    for series in aggregate(samples) {
        let index = match documents.iter().position(|doc| doc.accepts(&series)) {
            Some(index) => index,
            None => {
                documents.push(Document::default());
                documents.len() - 1
            }
        };
        let document = &mut documents[index];
        for (key, value) in &series.labels {
            document.dimensions.insert(key, value.clone());
        }
        document.series.push(series);
    }
    documents
        .into_iter()
        .map(|document| render(namespace, timestamp_ms, document).to_string())
        .collect()
}

/// Sums counts and gathers durations per metric and label values, first-seen order kept.
fn aggregate(samples: Vec<Sample>) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for sample in samples {
        let held = series.iter_mut().find(|held| {
            held.name == sample.name
                && held.labels == sample.labels
                && (sample.unit == Unit::Count || held.values.len() < MAX_VALUES)
        });
        match (held, sample.unit) {
            (Some(held), Unit::Count) => held.values[0] += sample.value,
            (Some(held), Unit::Seconds) => held.values.push(sample.value),
            (None, _) => series.push(Series {
                name: sample.name,
                unit: sample.unit,
                labels: sample.labels,
                values: vec![sample.value],
            }),
        }
    }
    series
}

fn render(namespace: &str, timestamp_ms: i64, document: Document) -> Value {
    // One directive per set of label names: a directive's dimension sets apply to all its metrics.
    let mut directives: BTreeMap<Vec<&'static str>, Vec<Value>> = BTreeMap::new();
    let mut root = Map::new();
    for (key, value) in document.dimensions {
        root.insert(key.to_owned(), Value::from(value));
    }
    for series in document.series {
        let keys: Vec<&'static str> = series.labels.iter().map(|(key, _)| *key).collect();
        directives
            .entry(keys)
            .or_default()
            .push(json!({ "Name": series.name, "Unit": series.unit.as_str() }));
        let value = match series.values.as_slice() {
            [one] => json!(one),
            many => json!(many),
        };
        root.insert(series.name.to_owned(), value);
    }
    let directives: Vec<Value> = directives
        .into_iter()
        .map(|(keys, metrics)| {
            let dimensions = if keys.is_empty() {
                json!([[]])
            } else {
                json!([keys, []])
            };
            json!({ "Namespace": namespace, "Dimensions": dimensions, "Metrics": metrics })
        })
        .collect();
    root.insert(
        "_aws".to_owned(),
        json!({ "Timestamp": timestamp_ms, "CloudWatchMetrics": directives }),
    );
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(
        name: &'static str,
        unit: Unit,
        labels: &[(&'static str, &str)],
        value: f64,
    ) -> Sample {
        Sample {
            name,
            unit,
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            value,
        }
    }

    #[test]
    fn one_request_is_one_document() {
        let lines = lines(
            "MCP",
            1_700_000_000_000,
            vec![
                sample(
                    "mcp_requests_total",
                    Unit::Count,
                    &[("method", "tools/call"), ("status", "200")],
                    1.0,
                ),
                sample(
                    "mcp_request_duration_seconds",
                    Unit::Seconds,
                    &[("method", "tools/call")],
                    0.004,
                ),
                sample("mcp_active_sessions", Unit::Count, &[], 0.0),
            ],
        );
        assert_eq!(lines.len(), 1);
        let doc: Value = serde_json::from_str(&lines[0]).expect("json");
        assert_eq!(doc["method"], "tools/call");
        assert_eq!(doc["status"], "200");
        assert_eq!(doc["mcp_requests_total"], 1.0);
        assert_eq!(doc["mcp_request_duration_seconds"], 0.004);
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        let directives = doc["_aws"]["CloudWatchMetrics"]
            .as_array()
            .expect("directives");
        assert_eq!(directives.len(), 3);
        assert!(
            directives
                .iter()
                .any(|d| d["Dimensions"] == json!([["method", "status"], []]))
        );
        assert!(directives.iter().any(|d| d["Dimensions"] == json!([[]])));
    }

    #[test]
    fn differing_label_values_go_to_further_documents_and_counts_add_up() {
        let get = [("store", "dynamodb"), ("op", "load_session")];
        let touch = [("store", "dynamodb"), ("op", "touch_session")];
        let lines = lines(
            "MCP",
            0,
            vec![
                sample("mcp_store_operations_total", Unit::Count, &get, 1.0),
                sample("mcp_store_duration_seconds", Unit::Seconds, &get, 0.002),
                sample("mcp_store_operations_total", Unit::Count, &touch, 1.0),
                sample("mcp_store_duration_seconds", Unit::Seconds, &touch, 0.003),
                sample("mcp_store_operations_total", Unit::Count, &get, 1.0),
                sample("mcp_store_duration_seconds", Unit::Seconds, &get, 0.001),
            ],
        );
        let docs: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["op"], "load_session");
        assert_eq!(docs[0]["mcp_store_operations_total"], 2.0);
        assert_eq!(docs[0]["mcp_store_duration_seconds"], json!([0.002, 0.001]));
        assert_eq!(docs[1]["op"], "touch_session");
        assert_eq!(docs[1]["mcp_store_operations_total"], 1.0);
    }
}
