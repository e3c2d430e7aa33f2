//! The push request: parsed straight from the job server's JSON body (camelCase, with
//! snake_case aliases for the embedded Python API) and validated field by field, so every
//! entry point shares one set of rules and one set of error messages.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::cron::CronSchedule;
use crate::error::{EngineError, Result};
use crate::job::ChildFailure;
use crate::json_depth;

pub const MAX_PRIORITY: i64 = i32::MAX as i64;
pub const MAX_DELAY_MS: u64 = 10 * 365 * 86_400_000;
pub const MAX_BACKOFF_MS: u64 = 7 * 86_400_000;
pub const MAX_ATTEMPTS: u64 = 10_000;
/// A push without `maxAttempts` runs at most this many times (the reference's default).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// A push without `backoff` waits this long (ms) before its first retry.
pub const DEFAULT_BACKOFF_MS: u32 = 1000;
pub const MAX_KEY_LEN: usize = 512;
pub const MAX_TAGS: usize = 64;
pub const MAX_DEPENDENCIES: usize = 1000;
pub const MAX_NAME_LEN: usize = 256;

/// What to do with a finished job: keep it (subject to retention), remove it at once, or
/// keep only the newest `n` finished jobs of its queue in that state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Removal {
    #[default]
    Keep,
    Remove,
    KeepLast(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatSpec {
    /// Interval in ms between occurrences.
    pub every: Option<u64>,
    /// Cron pattern (UTC).
    pub pattern: Option<String>,
    /// Total number of runs, the first included.
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub name: Option<String>,
    /// The payload as raw JSON text, stored without re-encoding.
    pub data: Box<str>,
    pub priority: i32,
    pub delay: u64,
    pub max_attempts: u32,
    pub backoff: u64,
    pub ttl: Option<u64>,
    pub timeout: Option<u64>,
    pub unique_key: Option<String>,
    pub job_id: Option<String>,
    pub tags: Vec<String>,
    pub group_id: Option<String>,
    pub lifo: bool,
    pub remove_on_complete: Removal,
    pub remove_on_fail: Removal,
    pub durable: bool,
    pub depends_on: Vec<String>,
    pub repeat: Option<RepeatSpec>,
    /// Flow links (`parentId`, `childrenIds` and the child's failure policy): used by
    /// `Engine::push_flow` only; a plain push ignores them.
    pub parent_id: Option<String>,
    pub children_ids: Vec<String>,
    pub on_child_failure: ChildFailure,
    /// Of `depends_on`, the jobs other slots of a cluster hold: set by the engine (a
    /// spanning flow or `dependsOn`), never parsed from a request.
    pub remote_deps: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPush<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    name: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    priority: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    delay: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "present",
        alias = "max_attempts",
        alias = "attempts"
    )]
    max_attempts: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    backoff: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    ttl: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    timeout: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present", alias = "unique_key")]
    unique_key: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present", alias = "job_id")]
    job_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    tags: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present", alias = "group_id")]
    group_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    lifo: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "present",
        alias = "remove_on_complete"
    )]
    remove_on_complete: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "present",
        alias = "remove_on_fail"
    )]
    remove_on_fail: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    durable: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present", alias = "depends_on")]
    depends_on: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    repeat: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present", alias = "parent_id")]
    parent_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present", alias = "children_ids")]
    children_ids: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    fail_parent_on_failure: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    continue_parent_on_failure: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    ignore_dependency_on_failure: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    remove_dependency_on_failure: Option<&'a RawValue>,
}

/// Keeps an explicit `null` as `Some("null")` (serde would turn it into `None`), so that
/// fields where null is not allowed can say so.
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Deserializes `T` only from a JSON object (serde would also read a struct from an
/// array of its fields in order).
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Objects<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Objects<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Objects(std::marker::PhantomData))
            .map(ObjectOnly)
    }
}

/// A body that is JSON of the wrong shape: serde's message without the parser position
/// (" at line 1 column 5") it ends with, which means nothing to a client.
fn shape_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) if e.line() > 0 => message.to_string(),
        _ => text,
    }
}

fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// Parses a JSON number that must be an integer in `lo..=hi` (integral floats accepted).
fn int_field(raw: &RawValue, field: &str, lo: i64, hi: i64) -> Result<i64> {
    let bad = || EngineError::invalid(format!("{field} must be an integer between {lo} and {hi}"));
    let v: serde_json::Number = serde_json::from_str(raw.get()).map_err(|_| bad())?;
    let n = if let Some(i) = v.as_i64() {
        i
    } else {
        let f = v.as_f64().ok_or_else(bad)?;
        if !f.is_finite() || f.fract() != 0.0 || f < lo as f64 || f > hi as f64 {
            return Err(bad());
        }
        f as i64
    };
    if n < lo || n > hi {
        return Err(bad());
    }
    Ok(n)
}

fn opt_int(raw: Option<&RawValue>, field: &str, lo: i64, hi: i64) -> Result<Option<i64>> {
    match raw {
        None => Ok(None),
        Some(r) if is_null(r) => Ok(None),
        Some(r) => int_field(r, field, lo, hi).map(Some),
    }
}

/// A number that has a default but may not be null: NaN from a JSON encoder arrives as
/// null, and must not silently become the default.
fn int_or(raw: Option<&RawValue>, field: &str, lo: i64, hi: i64, default: i64) -> Result<i64> {
    match raw {
        None => Ok(default),
        Some(r) => int_field(r, field, lo, hi),
    }
}

fn opt_bool(raw: Option<&RawValue>, field: &str) -> Result<bool> {
    match raw {
        None => Ok(false),
        Some(r) if is_null(r) => Ok(false),
        Some(r) => serde_json::from_str(r.get())
            .map_err(|_| EngineError::invalid(format!("{field} must be a boolean"))),
    }
}

/// A non-empty string of at most `max` bytes without control characters.
pub fn check_key(value: &str, field: &str, max: usize) -> Result<()> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(EngineError::invalid(format!(
            "{field} must be a non-empty string of at most {max} bytes without control characters"
        )));
    }
    Ok(())
}

fn opt_string(raw: Option<&RawValue>, field: &str, max: usize) -> Result<Option<String>> {
    match raw {
        None => Ok(None),
        Some(r) if is_null(r) => Ok(None),
        Some(r) => {
            let s: String = serde_json::from_str(r.get())
                .map_err(|_| EngineError::invalid(format!("{field} must be a string")))?;
            check_key(&s, field, max)?;
            Ok(Some(s))
        }
    }
}

fn string_list(raw: Option<&RawValue>, field: &str, max_items: usize) -> Result<Vec<String>> {
    match raw {
        None => Ok(Vec::new()),
        Some(r) if is_null(r) => Ok(Vec::new()),
        Some(r) => {
            let items: Vec<String> = serde_json::from_str(r.get()).map_err(|_| {
                EngineError::invalid(format!("{field} must be an array of strings"))
            })?;
            if items.len() > max_items {
                return Err(EngineError::invalid(format!(
                    "{field} has more than {max_items} entries"
                )));
            }
            for item in &items {
                check_key(item, field, MAX_KEY_LEN)?;
            }
            Ok(items)
        }
    }
}

fn removal(raw: Option<&RawValue>, field: &str) -> Result<Removal> {
    let Some(r) = raw.filter(|r| !is_null(r)) else {
        return Ok(Removal::Keep);
    };
    match r.get() {
        "true" => Ok(Removal::Remove),
        "false" => Ok(Removal::Keep),
        _ => int_field(r, field, 0, u32::MAX as i64)
            .map(|n| Removal::KeepLast(n as u32))
            .map_err(|_| {
                EngineError::invalid(format!("{field} must be a boolean or a non-negative count"))
            }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepeat<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    every: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    limit: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    pattern: Option<&'a RawValue>,
}

fn repeat(raw: Option<&RawValue>) -> Result<Option<RepeatSpec>> {
    let Some(r) = raw.filter(|r| !is_null(r)) else {
        return Ok(None);
    };
    let rr: RawRepeat = serde_json::from_str(r.get()).map_err(|_| {
        EngineError::invalid(
            "repeat must be an object with 'every' (ms) or 'pattern', and an optional 'limit'",
        )
    })?;
    let every = opt_int(rr.every, "repeat.every", 1, MAX_DELAY_MS as i64)?.map(|v| v as u64);
    let limit = opt_int(rr.limit, "repeat.limit", 1, u32::MAX as i64)?.map(|v| v as u32);
    let pattern = opt_string(rr.pattern, "repeat.pattern", MAX_NAME_LEN)?;
    match (&every, &pattern) {
        (None, None) => return Err(EngineError::invalid("repeat needs 'every' or 'pattern'")),
        (Some(_), Some(_)) => {
            return Err(EngineError::invalid(
                "repeat takes 'every' or 'pattern', not both",
            ))
        }
        (None, Some(p)) => {
            CronSchedule::parse(p)?;
        }
        _ => {}
    }
    Ok(Some(RepeatSpec {
        every,
        pattern,
        limit,
    }))
}

/// The child's failure policy from bunqueue's four booleans (at most one may be set).
fn child_failure(raw: &RawPush) -> Result<ChildFailure> {
    let flags = [
        (
            raw.fail_parent_on_failure,
            "failParentOnFailure",
            ChildFailure::FailParent,
        ),
        (
            raw.continue_parent_on_failure,
            "continueParentOnFailure",
            ChildFailure::Continue,
        ),
        (
            raw.ignore_dependency_on_failure,
            "ignoreDependencyOnFailure",
            ChildFailure::Ignore,
        ),
        (
            raw.remove_dependency_on_failure,
            "removeDependencyOnFailure",
            ChildFailure::Remove,
        ),
    ];
    let mut chosen = ChildFailure::Wait;
    for (value, name, policy) in flags {
        if opt_bool(value, name)? {
            if chosen != ChildFailure::Wait {
                return Err(EngineError::invalid(
                    "flow failure policies are mutually exclusive",
                ));
            }
            chosen = policy;
        }
    }
    Ok(chosen)
}

impl PushOptions {
    /// Parses one push body (a JSON object). `max_payload` bounds the `data` bytes.
    pub fn from_json(body: &[u8], max_payload: usize) -> Result<Self> {
        // serde would also read a struct from an array; only objects are push bodies.
        if body.trim_ascii_start().first() != Some(&b'{') {
            return Err(EngineError::invalid(if is_json(body) {
                "Request body must be a JSON object"
            } else {
                "Invalid JSON body"
            }));
        }
        let raw: RawPush = serde_json::from_slice(body).map_err(|e| {
            if e.is_data() && is_json(body) {
                EngineError::invalid(format!("Invalid request body: {}", shape_error(&e)))
            } else {
                EngineError::invalid("Invalid JSON body")
            }
        })?;
        Self::from_raw(raw, max_payload)
    }

    /// Parses a batch: a JSON array of push bodies, or `{"jobs": [...]}` (the bulk
    /// endpoint's body).
    pub fn many_from_json(body: &[u8], max_payload: usize) -> Result<Vec<Self>> {
        // One pass over the body: items are parsed in place, and must be objects.
        #[derive(Deserialize)]
        struct Bulk<'a> {
            #[serde(borrow)]
            jobs: Vec<ObjectOnly<RawPush<'a>>>,
        }
        let parsed = if body.trim_ascii_start().first() == Some(&b'{') {
            serde_json::from_slice::<Bulk>(body).map(|b| b.jobs)
        } else {
            serde_json::from_slice::<Vec<ObjectOnly<RawPush>>>(body)
        };
        let items = parsed.map_err(|e| {
            // serde stops at the first item of the wrong shape: a body that is not JSON
            // at all is told so, whatever came first.
            if e.is_data() && is_json(body) {
                EngineError::invalid(format!(
                    "Expected a JSON array of job objects, or {{\"jobs\": [...]}}: {}",
                    shape_error(&e)
                ))
            } else {
                EngineError::invalid("Invalid JSON body")
            }
        })?;
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                Self::from_raw(item.0, max_payload).map_err(|e| EngineError {
                    kind: e.kind,
                    message: format!("job {i}: {}", e.message),
                })
            })
            .collect()
    }

    fn from_raw(raw: RawPush, max_payload: usize) -> Result<Self> {
        let data = raw
            .data
            .ok_or_else(|| EngineError::invalid("data is required"))?;
        if data.get().len() > max_payload {
            return Err(EngineError::invalid(format!(
                "data is {} bytes, over the limit of {max_payload} bytes",
                data.get().len()
            )));
        }
        json_depth::check(data.get(), "data")?;
        let name = opt_string(raw.name, "name", MAX_NAME_LEN)?;
        let priority = int_or(raw.priority, "priority", -MAX_PRIORITY, MAX_PRIORITY, 0)?;
        let delay = int_or(raw.delay, "delay", 0, MAX_DELAY_MS as i64, 0)?;
        let max_attempts = int_or(
            raw.max_attempts,
            "maxAttempts",
            1,
            MAX_ATTEMPTS as i64,
            DEFAULT_MAX_ATTEMPTS.into(),
        )?;
        let backoff = int_or(
            raw.backoff,
            "backoff",
            0,
            MAX_BACKOFF_MS as i64,
            DEFAULT_BACKOFF_MS.into(),
        )?;
        let ttl = opt_int(raw.ttl, "ttl", 1, MAX_DELAY_MS as i64)?.map(|v| v as u64);
        let timeout = opt_int(raw.timeout, "timeout", 1, MAX_DELAY_MS as i64)?.map(|v| v as u64);
        let opts = PushOptions {
            remote_deps: Vec::new(),
            name,
            data: data.get().into(),
            priority: priority as i32,
            delay: delay as u64,
            max_attempts: max_attempts as u32,
            backoff: backoff as u64,
            ttl,
            timeout,
            unique_key: opt_string(raw.unique_key, "uniqueKey", MAX_KEY_LEN)?,
            job_id: opt_string(raw.job_id, "jobId", MAX_KEY_LEN)?,
            tags: string_list(raw.tags, "tags", MAX_TAGS)?,
            group_id: opt_string(raw.group_id, "groupId", MAX_KEY_LEN)?,
            lifo: opt_bool(raw.lifo, "lifo")?,
            remove_on_complete: removal(raw.remove_on_complete, "removeOnComplete")?,
            remove_on_fail: removal(raw.remove_on_fail, "removeOnFail")?,
            durable: opt_bool(raw.durable, "durable")?,
            depends_on: string_list(raw.depends_on, "dependsOn", MAX_DEPENDENCIES)?,
            repeat: repeat(raw.repeat)?,
            parent_id: opt_string(raw.parent_id, "parentId", MAX_KEY_LEN)?,
            children_ids: string_list(raw.children_ids, "childrenIds", MAX_DEPENDENCIES)?,
            on_child_failure: child_failure(&raw)?,
        };
        Ok(opts)
    }
}

/// Queue names appear in URL paths and Prometheus labels, so they are restricted to a
/// safe alphabet.
pub fn check_queue_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(EngineError::invalid(format!(
            "Invalid queue name: must be 1-{MAX_NAME_LEN} characters of letters, digits and - _ . : @"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<PushOptions> {
        PushOptions::from_json(body.as_bytes(), 1024)
    }

    #[test]
    fn defaults_and_full_body() {
        let o = parse(r#"{"data":{"a":1}}"#).unwrap();
        assert_eq!(
            (o.priority, o.delay, o.max_attempts, o.backoff),
            (0, 0, 3, 1000)
        );
        assert_eq!(&*o.data, r#"{"a":1}"#);
        let o = parse(
            r#"{"data":1,"priority":10,"delay":5,"maxAttempts":5,"backoff":2000,"ttl":9,
            "timeout":30,"uniqueKey":"u","jobId":"j","tags":["a"],"groupId":"g","lifo":true,
            "removeOnComplete":true,"removeOnFail":4,"durable":true,"dependsOn":["x"],
            "repeat":{"every":100,"limit":2}}"#,
        )
        .unwrap();
        assert_eq!(o.priority, 10);
        assert_eq!(o.remove_on_complete, Removal::Remove);
        assert_eq!(o.remove_on_fail, Removal::KeepLast(4));
        assert_eq!(o.repeat.unwrap().limit, Some(2));
        let snake = parse(r#"{"data":1,"max_attempts":7,"job_id":"k"}"#).unwrap();
        assert_eq!(
            (snake.max_attempts, snake.job_id.as_deref()),
            (7, Some("k"))
        );
    }

    #[test]
    fn bad_input_gets_named_errors() {
        let cases = [
            ("{", "Invalid JSON body"),
            ("[1]", "JSON object"),
            (r#"{"priority":1}"#, "data is required"),
            (
                r#"{"data":1,"priority":"x"}"#,
                "priority must be an integer",
            ),
            (
                r#"{"data":1,"priority":1.5}"#,
                "priority must be an integer",
            ),
            (r#"{"data":1,"delay":-1}"#, "delay must be an integer"),
            (
                r#"{"data":1,"priority":null}"#,
                "priority must be an integer",
            ),
            (r#"{"data":1,"maxAttempts":0}"#, "maxAttempts"),
            (r#"{"data":1,"tags":"x"}"#, "tags must be an array"),
            (r#"{"data":1,"lifo":"yes"}"#, "lifo must be a boolean"),
            (
                r#"{"data":1,"uniqueKey":""}"#,
                "uniqueKey must be a non-empty",
            ),
            (
                r#"{"data":1,"repeat":{"every":1,"pattern":"* * * * *"}}"#,
                "not both",
            ),
            (r#"{"data":1,"repeat":{"pattern":"nope"}}"#, "cron"),
            (r#"{"data":1,"removeOnFail":-2}"#, "removeOnFail"),
        ];
        for (body, want) in cases {
            let err = parse(body).unwrap_err();
            assert!(err.message.contains(want), "{body}: {}", err.message);
        }
        let big = format!(r#"{{"data":"{}"}}"#, "x".repeat(2000));
        assert!(parse(&big).unwrap_err().message.contains("over the limit"));
    }

    #[test]
    fn bad_bodies_never_show_a_parser_position() {
        // The message is for a client: no "at line 1 column 5" from the parser.
        for body in [r#"{"data":1,"data":2}"#, r#"{"data":1,"data":2"#, "{", ""] {
            let err = parse(body).unwrap_err().message;
            assert!(
                !err.contains("line") && !err.contains("column"),
                "{body}: {err}"
            );
        }
        let bulk = [
            ("[1]", "expected a JSON object"),
            ("[{\"data\":1},2]", "expected a JSON object"),
            (r#"{"jobs":5}"#, "expected a sequence"),
            (
                r#"{"jobs":[{"data":1,"data":2}]}"#,
                "duplicate field `data`",
            ),
            (r#"{"other":[]}"#, "missing field `jobs`"),
            ("[{\"data\":1},", "Invalid JSON body"),
            ("[1,", "Invalid JSON body"),
            (r#"[{"data":1,"data":2},"#, "Invalid JSON body"),
            ("", "Invalid JSON body"),
        ];
        for (body, want) in bulk {
            let err = PushOptions::many_from_json(body.as_bytes(), 1024)
                .unwrap_err()
                .message;
            assert!(err.contains(want), "{body}: {err}");
            assert!(
                !err.contains("line") && !err.contains("column"),
                "{body}: {err}"
            );
        }
    }

    #[test]
    fn queue_names() {
        assert!(check_queue_name("emails.v2:high@eu").is_ok());
        for bad in ["", "a b", "a/b", "é", &"x".repeat(300)] {
            assert!(check_queue_name(bad).is_err(), "{bad}");
        }
    }
}
