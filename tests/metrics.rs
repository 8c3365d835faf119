//! `/metrics` parsed as the Prometheus text exposition format (version 0.0.4), strictly:
//! every series has `# HELP` and `# TYPE`, every sample line parses, histograms are whole.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{RedisServer, TestApp};

/// Series that must be in the exposition once the requests below were served.
const EXPECTED: [&str; 12] = [
    "cachegate_http_requests_total",
    "cachegate_http_request_duration_seconds",
    "cachegate_cache_lookups_total",
    "cachegate_pool_max_size",
    "cachegate_pool_size",
    "cachegate_pool_available",
    "cachegate_pool_waiting",
    "cachegate_redis_up",
    "cachegate_redis_call_duration_seconds",
    "cachegate_redis_errors_total",
    "cachegate_redis_connection_losses_total",
    "cachegate_redis_nodes",
];

/// One metric family: its declared type and help, and its samples.
#[derive(Default, Debug)]
struct Family {
    kind: Option<String>,
    help: Option<String>,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        other => other
            .parse()
            .map_err(|_| format!("not a sample value: {other:?}")),
    }
}

/// `{name="value",...}`: label values are quoted with `\\`, `\"` and `\n` escapes.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text
        .strip_prefix('{')
        .ok_or_else(|| format!("labels must open with {{: {text}"))?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("a label without =\": {rest}"))?;
        if !is_label_name(name) {
            return Err(format!("a bad label name: {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("a bad escape in a label value: {other:?}")),
                },
                Some((at, '"')) => break at,
                Some((_, c)) => value.push(c),
                None => return Err(format!("an unterminated label value: {after}")),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("the label {name} twice"));
        }
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// The family a sample belongs to: histograms and summaries add suffixes to their name.
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, Family>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            let kind = families.get(base).and_then(|f| f.kind.as_deref());
            if matches!(kind, Some("histogram" | "summary")) {
                return base;
            }
        }
    }
    name
}

/// Parses the whole exposition, refusing anything the format does not allow.
fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (keyword, name, rest) = (words.next(), words.next(), words.next());
            let Some(name) = name.filter(|n| is_metric_name(n)) else {
                continue;
            };
            let family = families.entry(name.to_string()).or_default();
            let slot = match keyword {
                Some("HELP") => &mut family.help,
                Some("TYPE") => &mut family.kind,
                _ => continue,
            };
            if !family.samples.is_empty() {
                return Err(format!("{keyword:?} of {name} after its samples"));
            }
            let value = rest.unwrap_or_default().to_string();
            if slot.replace(value).is_some() {
                return Err(format!("{keyword:?} of {name} twice"));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| format!("a sample line without a value: {line}"))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(format!("a bad metric name: {line}"));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..])?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| format!("no space before the value: {line}"))?
            .split(' ');
        let value = parse_value(fields.next().unwrap_or_default())?;
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| format!("a bad timestamp: {line}"))?;
        }
        if fields.next().is_some() {
            return Err(format!("text after the timestamp: {line}"));
        }
        let family = family_of(name, &families).to_string();
        families.entry(family).or_default().samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(families)
}

/// Every histogram series: buckets by `le` that only grow, ending at `+Inf` with `_count`.
fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<BTreeMap<String, String>, f64> = BTreeMap::new();
    for sample in &family.samples {
        let mut labels = sample.labels.clone();
        if sample.name == format!("{name}_bucket") {
            let le = labels
                .remove("le")
                .ok_or_else(|| format!("a bucket of {name} without le"))?;
            series
                .entry(labels)
                .or_default()
                .push((parse_value(&le)?, sample.value));
        } else if sample.name == format!("{name}_count") {
            counts.insert(labels, sample.value);
        }
    }
    if series.is_empty() {
        return Err(format!("the histogram {name} has no buckets"));
    }
    for (labels, buckets) in &series {
        let cumulative = buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        let last = buckets.last().copied().unwrap_or_default();
        if !cumulative || last.0 != f64::INFINITY || Some(&last.1) != counts.get(labels) {
            return Err(format!("{name}{labels:?}: buckets {buckets:?}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_has_help_and_type_and_the_exposition_parses() {
    let mut redis = RedisServer::start();
    let app = TestApp::start_with(&redis, &[("REDIS_COMMAND_TIMEOUT_MS", "300")]).await;
    assert_eq!(app.put("m", "{\"a\":1}").await.status(), 204);
    assert_eq!(app.get("m").await.status(), 200);
    assert_eq!(app.get("absent").await.status(), 404);
    let batch = serde_json::json!({"keys": ["m", "absent"]});
    assert_eq!(app.post_json("/v1/batch/get", &batch).await.status(), 200);
    // Readiness counts the reachable nodes.
    app.wait_ready().await;
    // A failed Redis call, so the error counter has a series.
    redis.stop();
    assert_eq!(app.get("m").await.status(), 503);

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let families = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let present: BTreeSet<&str> = families
        .iter()
        .filter(|(_, f)| !f.samples.is_empty())
        .map(|(name, _)| name.as_str())
        .collect();
    for name in EXPECTED {
        assert!(present.contains(name), "no {name} series:\n{text}");
    }
    for (name, family) in &families {
        let help = family.help.as_deref().unwrap_or_default();
        assert!(!help.trim().is_empty(), "{name} has no HELP:\n{text}");
        let kind = family.kind.as_deref().unwrap_or_default();
        assert!(
            ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
            "{name} has no valid TYPE ({kind:?}):\n{text}"
        );
        assert!(
            !family.samples.is_empty(),
            "{name} is declared without samples"
        );
        if kind == "histogram" {
            check_histogram(name, family).unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
        if kind == "counter" {
            assert!(name.ends_with("_total"), "the counter {name} lacks _total");
        }
    }
    app.stop().await;
}

#[test]
fn the_parser_refuses_what_the_format_does_not_allow() {
    let good = "# HELP a_total A thing.\n# TYPE a_total counter\na_total{k=\"v \\\"q\\\"\"} 3\n";
    let families = parse(good).unwrap();
    assert_eq!(families["a_total"].samples[0].labels["k"], "v \"q\"");
    for bad in [
        "a_total 1\n# TYPE a_total counter\n",
        "# TYPE a counter\n# TYPE a gauge\na 1\n",
        "a{k=v} 1\n",
        "a{k=\"v} 1\n",
        "a{1k=\"v\"} 1\n",
        "a one\n",
        "a 1 2 3\n",
        "9a 1\n",
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad:?}");
    }
    let histogram = "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n";
    let families = parse(histogram).unwrap();
    assert!(check_histogram("h", &families["h"]).is_err());
}
