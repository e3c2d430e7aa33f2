//! How the router merges the answers of every slot's owner into the one a single server
//! would give (which routes use which merge: `route_http.rs`). Each merge takes the
//! owners' bodies in slot order; `None` means a body is not what the route returns
//! (the router then answers 502 rather than something made up).

use serde_json::Value;

/// The routes' merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Counters and gauges (`/stats`, `/metrics`, `/health`, `/heapstats`, `/gc`):
    /// numbers summed key by key, objects merged, `uptime` the largest, anything else
    /// (strings, arrays) the first owner's.
    Sum,
    /// Prometheus text: samples of equal name and labels summed, HELP and TYPE once.
    Prometheus,
    /// `{data: [queue summary]}`: concatenated, sorted by name as the engine lists
    /// queues (byte order).
    Queues,
    /// `{data: [flow parent]}`: concatenated, newest `createdAt` first, the first 100
    /// (the server's `FLOWS_LIMIT`).
    Flows,
    /// `{data: job or null}` (search by job id): the first owner's non-null answer.
    FirstFound,
    /// `{data: {queue: [..]}, meta: {pushed: {queue: [..]}, ..}}` (sparklines): the
    /// per-queue maps united.
    Sparklines,
    /// `{data: [worker]}`: a worker serving queues of several slots is registered with
    /// each slot's owner: its entries become one (queues united, job counts summed,
    /// first registration, last heartbeat and the freshest status), listed oldest
    /// registration first as the engine lists them.
    Workers,
    /// `{data: [scheduler]}`: concatenated in slot order (a scheduler belongs to one
    /// queue, so to one slot). The engine lists by first registration, which it does
    /// not expose: across slots the order is not one server's.
    Concat,
}

const FLOWS_LIMIT: usize = 100;

pub fn merge(how: Merge, bodies: &[Vec<u8>]) -> Option<Vec<u8>> {
    if how == Merge::Prometheus {
        let texts: Vec<&str> = bodies
            .iter()
            .map(|b| std::str::from_utf8(b).ok())
            .collect::<Option<_>>()?;
        return Some(prometheus(&texts).into_bytes());
    }
    let values: Vec<Value> = bodies
        .iter()
        .map(|b| serde_json::from_slice(b).ok())
        .collect::<Option<_>>()?;
    let merged = match how {
        Merge::Sum => values.into_iter().reduce(|mut a, b| {
            sum_into(&mut a, b, "");
            a
        })?,
        Merge::Queues => data_list(values, |items| {
            items.sort_by(|a, b| text(a, "name").cmp(text(b, "name")));
        })?,
        Merge::Flows => data_list(values, |items| {
            items.sort_by(|a, b| newer_first(&b["createdAt"], &a["createdAt"]));
            items.truncate(FLOWS_LIMIT);
        })?,
        Merge::Workers => data_list(values, workers)?,
        Merge::Concat => data_list(values, |_| {})?,
        Merge::FirstFound => {
            let first = values.first()?.clone();
            values
                .into_iter()
                .find(|v| v.get("data").is_some_and(|d| !d.is_null()))
                .unwrap_or(first)
        }
        Merge::Sparklines => values.into_iter().reduce(|mut a, b| {
            unite_maps(a.get_mut("data"), b.get("data"));
            let pushed = |v: &Value| v.get("meta").and_then(|m| m.get("pushed")).cloned();
            let theirs = pushed(&b);
            let mine = a.get_mut("meta").and_then(|m| m.get_mut("pushed"));
            unite_maps(mine, theirs.as_ref());
            a
        })?,
        Merge::Prometheus => unreachable!("handled above"),
    };
    serde_json::to_vec(&merged).ok()
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `createdAt` as the shapes write it: ISO text of one format (sorts as text) or ms.
fn newer_first(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => a.as_str().unwrap_or("").cmp(b.as_str().unwrap_or("")),
    }
}

/// The first body with every owner's `data` items appended, then `finish`ed.
fn data_list(values: Vec<Value>, finish: impl FnOnce(&mut Vec<Value>)) -> Option<Value> {
    let mut iter = values.into_iter();
    let mut first = iter.next()?;
    let mut items = first.get_mut("data")?.as_array_mut().map(std::mem::take)?;
    for mut v in iter {
        items.extend(v.get_mut("data")?.as_array_mut().map(std::mem::take)?);
    }
    finish(&mut items);
    first["data"] = Value::Array(items);
    Some(first)
}

fn workers(items: &mut Vec<Value>) {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        let id = item.get("id").filter(|id| !id.is_null());
        let Some(seen) = id.and_then(|id| out.iter_mut().find(|o| o.get("id") == Some(id))) else {
            out.push(item);
            continue;
        };
        if let (Some(mine), Some(theirs)) = (
            seen.get_mut("queues").and_then(Value::as_array_mut),
            item.get("queues").and_then(Value::as_array),
        ) {
            for q in theirs {
                if !mine.contains(q) {
                    mine.push(q.clone());
                }
            }
        }
        for key in ["activeJobs", "processedJobs", "failedJobs"] {
            if let (Some(a), Some(b)) = (seen[key].as_number(), item[key].as_number()) {
                seen[key] = Value::Number(add(a, b));
            }
        }
        if text(&item, "registeredAt") < text(seen, "registeredAt") {
            seen["registeredAt"] = item["registeredAt"].clone();
        }
        if text(&item, "lastHeartbeatAt") > text(seen, "lastHeartbeatAt") {
            seen["lastHeartbeatAt"] = item["lastHeartbeatAt"].clone();
        }
        let rank = |v: &Value| {
            ["live", "warning", "stale"]
                .iter()
                .position(|s| *s == text(v, "status"))
        };
        if rank(&item) < rank(seen) {
            seen["status"] = item["status"].clone();
        }
    }
    out.sort_by(|a, b| {
        (text(a, "registeredAt"), text(a, "id")).cmp(&(text(b, "registeredAt"), text(b, "id")))
    });
    *items = out;
}

fn unite_maps(into: Option<&mut Value>, from: Option<&Value>) {
    let into = into.and_then(Value::as_object_mut);
    if let (Some(into), Some(from)) = (into, from.and_then(Value::as_object)) {
        for (k, v) in from {
            into.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

fn sum_into(a: &mut Value, b: Value, key: &str) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(mine) => sum_into(mine, v, &k),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (a @ Value::Number(_), Value::Number(b)) => {
            let x = a.as_number().cloned().unwrap_or_else(|| 0.into());
            *a = Value::Number(if key == "uptime" {
                if x.as_f64() >= b.as_f64() {
                    x
                } else {
                    b
                }
            } else {
                add(&x, &b)
            });
        }
        _ => {}
    }
}

fn add(a: &serde_json::Number, b: &serde_json::Number) -> serde_json::Number {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        if let Some(s) = x.checked_add(y) {
            return s.into();
        }
    }
    let s = a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0);
    serde_json::Number::from_f64(s).unwrap_or_else(|| 0.into())
}

/// A family's lines: its HELP/TYPE and other comments once, then its samples.
struct Family {
    comments: Vec<String>,
    samples: Vec<(String, f64)>,
}

/// Merges Prometheus text expositions: a family is opened by its first HELP or TYPE
/// line (samples before any belong to a family of their own name); samples with the
/// same series (name and labels) are summed, timestamps dropped.
pub fn prometheus(texts: &[&str]) -> String {
    let mut families: Vec<(String, Family)> = Vec::new();
    for text in texts {
        let mut current: Option<usize> = None;
        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            let family_of = |name: &str, families: &mut Vec<(String, Family)>| {
                families
                    .iter()
                    .position(|(n, _)| n == name)
                    .unwrap_or_else(|| {
                        families.push((
                            name.to_string(),
                            Family {
                                comments: Vec::new(),
                                samples: Vec::new(),
                            },
                        ));
                        families.len() - 1
                    })
            };
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if let (Some("HELP" | "TYPE"), Some(name)) = (words.next(), words.next()) {
                    current = Some(family_of(name, &mut families));
                }
                let i = current.unwrap_or_else(|| family_of("", &mut families));
                let f = &mut families[i].1;
                if !f.comments.iter().any(|c| c == line) {
                    f.comments.push(line.to_string());
                }
                continue;
            }
            let Some((series, value)) = split_sample(line) else {
                continue;
            };
            let i = match current {
                Some(i) => i,
                None => family_of(series.split('{').next().unwrap_or(series), &mut families),
            };
            let samples = &mut families[i].1.samples;
            match samples.iter_mut().find(|(s, _)| s == series) {
                Some((_, total)) => *total += value,
                None => samples.push((series.to_string(), value)),
            }
        }
    }
    let mut out = String::new();
    for (_, f) in families {
        for c in f.comments {
            out.push_str(&c);
            out.push('\n');
        }
        for (series, value) in f.samples {
            out.push_str(&series);
            out.push(' ');
            out.push_str(&number(value));
            out.push('\n');
        }
    }
    out
}

/// `name{labels} value [timestamp]` as (series, value); label values may hold spaces.
fn split_sample(line: &str) -> Option<(&str, f64)> {
    let end = match line.rfind('}') {
        Some(i) if line.contains('{') => i + 1,
        _ => line.find(' ')?,
    };
    let (series, rest) = line.split_at(end);
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((series.trim_end(), value))
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}") // as the server writes whole numbers
    } else {
        format!("{v}")
    }
}

/// Splits SSE bytes into complete events (each with its blank-line end), keeping an
/// unfinished one in `pending`.
pub fn sse_events(pending: &mut Vec<u8>, more: &[u8]) -> Vec<Vec<u8>> {
    pending.extend_from_slice(more);
    let mut events = Vec::new();
    loop {
        let end = find(pending, b"\n\n")
            .map(|i| i + 2)
            .into_iter()
            .chain(find(pending, b"\r\n\r\n").map(|i| i + 4))
            .min();
        let Some(end) = end else { break };
        events.push(pending.drain(..end).collect());
    }
    events
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether an SSE event is only comment lines (a keep-alive).
pub fn sse_comment(event: &[u8]) -> bool {
    event
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .all(|l| l.starts_with(b":"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(how: Merge, values: &[Value]) -> Value {
        let bodies: Vec<Vec<u8>> = values.iter().map(|v| v.to_string().into_bytes()).collect();
        serde_json::from_slice(&merge(how, &bodies).unwrap()).unwrap()
    }

    #[test]
    fn sums_counters_and_keeps_the_rest() {
        let a = json!({"ok": true, "stats": {"queued": 2, "uptime": 5, "pushPerSec": 1.5},
                       "memory": {"rss": 10}, "topObjectTypes": [1]});
        let b = json!({"ok": true, "stats": {"queued": 3, "uptime": 9, "pushPerSec": 1,
                       "waitingChildren": 4}, "memory": {"rss": 20}, "topObjectTypes": [2]});
        let m = run(Merge::Sum, &[a, b]);
        assert_eq!(
            m["stats"],
            json!({"queued": 5, "uptime": 9, "pushPerSec": 2.5, "waitingChildren": 4})
        );
        assert_eq!(m["memory"]["rss"], 30);
        assert_eq!(m["ok"], true);
        assert_eq!(m["topObjectTypes"], json!([1]));
    }

    #[test]
    fn queue_lists_sort_by_name_and_flows_by_time() {
        let m = run(
            Merge::Queues,
            &[
                json!({"data": [{"name": "b"}, {"name": "d"}]}),
                json!({"data": [{"name": "a"}, {"name": "c"}]}),
            ],
        );
        assert_eq!(
            m["data"],
            json!([{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}])
        );
        let old: Vec<Value> = (0..80).map(|i| json!({"createdAt": i})).collect();
        let new: Vec<Value> = (100..180).map(|i| json!({"createdAt": i})).collect();
        let m = run(Merge::Flows, &[json!({"data": old}), json!({"data": new})]);
        let got = m["data"].as_array().unwrap();
        assert_eq!((got.len(), &got[0]["createdAt"]), (100, &json!(179)));
        assert_eq!(got[99]["createdAt"], 60);
        assert!(merge(Merge::Queues, &[b"{}".to_vec()]).is_none());
        assert!(merge(Merge::Sum, &[b"not json".to_vec()]).is_none());
        // Bodies of another shape never panic a merge.
        for how in [
            Merge::Sum,
            Merge::Queues,
            Merge::Flows,
            Merge::FirstFound,
            Merge::Sparklines,
            Merge::Workers,
            Merge::Concat,
        ] {
            for odd in [
                "[1]",
                "3",
                "{\"data\": 3, \"meta\": 1}",
                "{\"data\": [3, {\"id\": 1}]}",
            ] {
                let _ = merge(how, &[odd.as_bytes().to_vec(), odd.as_bytes().to_vec()]);
            }
        }
    }

    #[test]
    fn first_found_sparklines_and_concat() {
        let m = run(
            Merge::FirstFound,
            &[json!({"data": null}), json!({"data": {"id": "x"}})],
        );
        assert_eq!(m["data"]["id"], "x");
        let m = run(
            Merge::FirstFound,
            &[json!({"data": null}), json!({"data": null})],
        );
        assert!(m["data"].is_null());
        let m = run(
            Merge::Sparklines,
            &[
                json!({"data": {"a": [1]}, "meta": {"periodStarts": ["t"], "pushed": {"a": [2]}}}),
                json!({"data": {"b": [3]}, "meta": {"periodStarts": ["t"], "pushed": {"b": [4]}}}),
            ],
        );
        assert_eq!(m["data"], json!({"a": [1], "b": [3]}));
        assert_eq!(m["meta"]["pushed"], json!({"a": [2], "b": [4]}));
        let w = |id: &str, q: &str, at: &str, seen: &str, status: &str| {
            json!({"id": id, "queues": [q], "registeredAt": at, "lastHeartbeatAt": seen,
                   "status": status, "activeJobs": 1, "processedJobs": 2, "failedJobs": 0})
        };
        let m = run(
            Merge::Workers,
            &[
                json!({"data": [w("w2", "a", "T2", "T5", "stale"), w("w1", "a", "T3", "T4", "stale")]}),
                json!({"data": [w("w1", "b", "T1", "T6", "live")]}),
            ],
        );
        let mut one = w("w1", "a", "T1", "T6", "live");
        one["queues"] = json!(["a", "b"]);
        (one["activeJobs"], one["processedJobs"]) = (json!(2), json!(4));
        assert_eq!(m["data"], json!([one, w("w2", "a", "T2", "T5", "stale")]));
        let m = run(
            Merge::Concat,
            &[
                json!({"data": [{"name": "s2"}]}),
                json!({"data": [{"name": "s1"}]}),
            ],
        );
        assert_eq!(m["data"], json!([{"name": "s2"}, {"name": "s1"}]));
    }

    #[test]
    fn prometheus_sums_series_and_keeps_headers_once() {
        let a = "# HELP jobs_total Jobs\n# TYPE jobs_total counter\njobs_total 3\n\
                 q{queue=\"a b\"} 1\n# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 2\nlat_sum 0.5\n";
        let b = "# HELP jobs_total Jobs\n# TYPE jobs_total counter\njobs_total 4 1700\n\
                 q{queue=\"c\"} 2\n# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 1\nlat_sum 0.25\n";
        assert_eq!(
            prometheus(&[a, b]),
            "# HELP jobs_total Jobs\n# TYPE jobs_total counter\njobs_total 7.0\n\
             q{queue=\"a b\"} 1.0\nq{queue=\"c\"} 2.0\n# TYPE lat histogram\n\
             lat_bucket{le=\"+Inf\"} 3.0\nlat_sum 0.75\n"
        );
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(2.0), "2.0");
    }

    #[test]
    fn sse_events_split_on_blank_lines() {
        let mut pending = Vec::new();
        assert!(sse_events(&mut pending, b"data: 1").is_empty());
        let got = sse_events(&mut pending, b"\n\n: keepalive\n\ndata: 2\r\n\r\ndata");
        assert_eq!(
            got,
            vec![
                b"data: 1\n\n".to_vec(),
                b": keepalive\n\n".to_vec(),
                b"data: 2\r\n\r\n".to_vec()
            ]
        );
        assert_eq!(pending, b"data");
        assert!(sse_comment(b": keepalive\n\n"));
        assert!(!sse_comment(b"event: connected\ndata: {}\n\n"));
    }
}
