//! Renders jobs and events as the job server's JSON, straight into a byte buffer: the
//! payload is copied as the raw JSON it arrived as, never parsed and re-encoded.

use std::fmt::Write as _;

use crate::events::{Event, EventExtra};
use crate::ids::JobId;
use crate::job::{Job, JobState};
use crate::options::Removal;

pub fn push_str(out: &mut String, s: &str) {
    // Hot path (every key and string of every rendered job): clean runs are copied
    // whole; only the ASCII bytes that need escaping break a run, so slicing at them
    // always lands on a char boundary.
    out.push('"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escaped);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn push_id(out: &mut String, id: &JobId) {
    out.push('"');
    match id {
        JobId::Uuid(_) => id.write_to(out),
        JobId::Custom(s) => {
            out.pop();
            push_str(out, s);
            return;
        }
    }
    out.push('"');
}

fn push_ids(out: &mut String, ids: &[JobId]) {
    push_id_list(out, ids.iter());
}

fn push_id_list<'a>(out: &mut String, ids: impl Iterator<Item = &'a JobId>) {
    out.push('[');
    for (i, id) in ids.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_id(out, id);
    }
    out.push(']');
}

fn push_opt_ms(out: &mut String, key: &str, v: Option<u64>) {
    let _ = write!(out, ",\"{key}\":");
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("null"),
    }
}

fn push_opt_str(out: &mut String, key: &str, v: Option<&str>) {
    let _ = write!(out, ",\"{key}\":");
    match v {
        Some(s) => push_str(out, s),
        None => out.push_str("null"),
    }
}

fn push_removal(out: &mut String, key: &str, r: Removal) {
    let _ = match r {
        Removal::Keep => write!(out, ",\"{key}\":false"),
        Removal::Remove => write!(out, ",\"{key}\":true"),
        Removal::KeepLast(n) => write!(out, ",\"{key}\":{n}"),
    };
}

fn nonzero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

/// A job as `GET /jobs/:id` shows it (a superset of the pull shape).
pub fn write_job(out: &mut String, job: &Job, queue: &str, name: &str) {
    let ext = job.ext();
    out.push_str("{\"id\":");
    push_id(out, &job.id);
    out.push_str(",\"queue\":");
    push_str(out, queue);
    out.push_str(",\"name\":");
    push_str(out, name);
    out.push_str(",\"data\":");
    out.push_str(&job.data);
    let _ = write!(
        out,
        ",\"priority\":{},\"createdAt\":{},\"runAt\":{},\"delay\":{}",
        job.priority,
        job.created_at,
        job.run_at,
        ext.map_or(0, |e| e.delay)
    );
    push_opt_ms(out, "startedAt", nonzero(job.started_at));
    let finished = |st| (job.state == st).then_some(job.finished_at);
    push_opt_ms(out, "completedAt", finished(JobState::Completed));
    push_opt_ms(out, "failedAt", finished(JobState::Failed));
    let _ = write!(
        out,
        ",\"attempts\":{},\"maxAttempts\":{},\"backoff\":{},\"progress\":{},\"stalls\":{}",
        job.attempts, job.max_attempts, job.backoff, job.progress, job.stalls
    );
    out.push_str(",\"tags\":[");
    if let Some(e) = ext {
        for (i, t) in e.tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(out, t);
        }
    }
    out.push(']');
    let _ = write!(
        out,
        ",\"lifo\":{},\"durable\":{}",
        job.lifo(),
        job.durable()
    );
    push_removal(
        out,
        "removeOnComplete",
        ext.map_or(Removal::Keep, |e| e.remove_on_complete),
    );
    push_removal(
        out,
        "removeOnFail",
        ext.map_or(Removal::Keep, |e| e.remove_on_fail),
    );
    out.push_str(",\"state\":\"");
    out.push_str(job.state.as_str());
    out.push('"');
    push_opt_ms(out, "ttl", ext.and_then(|e| e.ttl));
    push_opt_ms(out, "timeout", ext.and_then(|e| e.timeout));
    push_opt_str(out, "uniqueKey", job.unique_key());
    push_opt_str(out, "groupId", job.group_id());
    out.push_str(",\"dependsOn\":");
    push_ids(out, ext.map_or(&[], |e| &e.depends_on));
    // Dependents here, then those other slots of a cluster hold (a flow child's parent).
    out.push_str(",\"dependents\":");
    let remote = ext.and_then(|e| e.remote.as_deref());
    push_id_list(
        out,
        ext.map_or(&[][..], |e| &e.dependents[..]).iter().chain(
            remote
                .into_iter()
                .flat_map(|r| r.dependents.iter().map(|(id, _)| id)),
        ),
    );
    out.push_str(",\"repeat\":");
    match ext.and_then(|e| e.repeat.as_ref()) {
        None => out.push_str("null"),
        Some(r) => {
            out.push('{');
            match (&r.spec.every, &r.spec.pattern) {
                (Some(every), _) => {
                    let _ = write!(out, "\"every\":{every}");
                }
                (None, Some(p)) => {
                    out.push_str("\"pattern\":");
                    push_str(out, p);
                }
                (None, None) => out.push_str("\"every\":null"),
            }
            push_opt_ms(out, "limit", r.spec.limit.map(u64::from));
            let _ = write!(out, ",\"count\":{}}}", r.count);
        }
    }
    out.push_str(",\"result\":");
    out.push_str(ext.and_then(|e| e.result.as_deref()).unwrap_or("null"));
    push_opt_str(out, "error", ext.and_then(|e| e.error.as_deref()));
    out.push('}');
}

/// One event as the job server's SSE/WebSocket streams send it.
pub fn write_event(out: &mut String, ev: &Event) {
    out.push_str("{\"eventType\":\"");
    out.push_str(ev.kind.as_str());
    out.push_str("\",\"queue\":");
    push_str(out, &ev.queue);
    out.push_str(",\"jobId\":");
    match &ev.job_id {
        Some(id) => push_id(out, id),
        None => out.push_str("null"),
    }
    let _ = write!(out, ",\"timestamp\":{}", ev.timestamp);
    match &ev.extra {
        EventExtra::None => {}
        EventExtra::Data(d) => {
            out.push_str(",\"data\":");
            out.push_str(d);
        }
        EventExtra::Result(r) => {
            out.push_str(",\"result\":");
            out.push_str(r);
        }
        EventExtra::Error(e) => {
            out.push_str(",\"error\":");
            push_str(out, e);
        }
        EventExtra::Progress(p, message) => {
            let _ = write!(out, ",\"progress\":{p}");
            if let Some(m) = message {
                out.push_str(",\"message\":");
                push_str(out, m);
            }
        }
        EventExtra::Prev(s) => {
            let _ = write!(out, ",\"prev\":\"{}\"", s.as_str());
        }
        EventExtra::Delay(d) => {
            let _ = write!(out, ",\"delay\":{d}");
        }
        EventExtra::Name(n) => {
            out.push_str(",\"name\":");
            match n {
                Some(n) => push_str(out, n),
                None => out.push_str("null"),
            }
        }
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    #[test]
    fn strings_are_escaped_and_events_are_valid_json() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\n\u{1}é");
        assert_eq!(s, r#""a\"b\\c\n\u0001é""#);
        let ev = Event {
            kind: EventKind::Failed,
            queue: "q".into(),
            job_id: Some(JobId::Custom("x\"y".into())),
            timestamp: 5,
            extra: EventExtra::Error("boom".into()),
        };
        let mut out = String::new();
        write_event(&mut out, &ev);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["jobId"], "x\"y");
        assert_eq!(v["error"], "boom");
        assert_eq!(v["eventType"], "failed");
    }

    #[test]
    fn escaped_strings_read_back_as_themselves() {
        for text in [
            "",
            "plain",
            "\"",
            "é\u{1f}ü\t",
            "\u{7f}x\u{0}",
            "日本語\\\n\r",
            "end\u{1}",
        ] {
            let mut s = String::new();
            push_str(&mut s, text);
            let back: String = serde_json::from_str(&s).unwrap();
            assert_eq!(back, text, "{s}");
        }
    }
}
