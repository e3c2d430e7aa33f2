//! The small request bodies of the job server besides push: ack `{result?, token?}` and
//! fail `{error?, token?}`. Parsed in Rust like push, so the result is stored as the raw
//! JSON the client sent. An empty body means `{}`. Unknown fields are ignored, which lets
//! a WebSocket command (`{"cmd":"ACK","id":..,"reqId":..}`) be passed as is.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{EngineError, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckRequest {
    pub result: Option<Box<str>>,
    pub token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailRequest {
    pub error: Option<String>,
    pub token: Option<String>,
}

#[derive(Deserialize)]
struct RawBody<'a> {
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    token: Option<&'a RawValue>,
}

fn parse(body: &[u8]) -> Result<RawBody<'_>> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Ok(RawBody {
            result: None,
            error: None,
            token: None,
        });
    }
    if trimmed.first() != Some(&b'{') {
        let valid = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
        return Err(EngineError::invalid(if valid {
            "Request body must be a JSON object"
        } else {
            "Invalid JSON body"
        }));
    }
    serde_json::from_slice(trimmed).map_err(|_| EngineError::invalid("Invalid JSON body"))
}

fn opt_string(raw: Option<&RawValue>, field: &str) -> Result<Option<String>> {
    match raw {
        None => Ok(None),
        Some(r) if r.get() == "null" => Ok(None),
        Some(r) => serde_json::from_str(r.get())
            .map(Some)
            .map_err(|_| EngineError::invalid(format!("{field} must be a string"))),
    }
}

impl AckRequest {
    pub fn from_json(body: &[u8], max_result: usize) -> Result<Self> {
        let raw = parse(body)?;
        let result = raw.result.map(|r| r.get()).filter(|r| *r != "null");
        if let Some(r) = result {
            if r.len() > max_result {
                return Err(EngineError::invalid(format!(
                    "result is {} bytes, over the limit of {max_result} bytes",
                    r.len()
                )));
            }
        }
        Ok(Self {
            result: result.map(Into::into),
            token: opt_string(raw.token, "token")?,
        })
    }
}

impl FailRequest {
    pub fn from_json(body: &[u8], max_error: usize) -> Result<Self> {
        let raw = parse(body)?;
        let error = opt_string(raw.error, "error")?;
        if error.as_ref().is_some_and(|e| e.len() > max_error) {
            return Err(EngineError::invalid(format!(
                "error is over the limit of {max_error} bytes"
            )));
        }
        Ok(Self {
            error,
            token: opt_string(raw.token, "token")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_bodies() {
        assert_eq!(
            AckRequest::from_json(b"", 100).unwrap(),
            AckRequest::default()
        );
        let a = AckRequest::from_json(br#"{"result":{"sent": true},"token":"t","cmd":"ACK"}"#, 100)
            .unwrap();
        assert_eq!(a.result.as_deref(), Some(r#"{"sent": true}"#));
        assert_eq!(a.token.as_deref(), Some("t"));
        assert_eq!(
            AckRequest::from_json(br#"{"result":null}"#, 100)
                .unwrap()
                .result,
            None
        );
        assert!(AckRequest::from_json(b"{", 100)
            .unwrap_err()
            .message
            .contains("Invalid JSON"));
        assert!(AckRequest::from_json(b"[1]", 100)
            .unwrap_err()
            .message
            .contains("object"));
        assert!(AckRequest::from_json(br#"{"token":5}"#, 100).is_err());
        assert!(AckRequest::from_json(br#"{"result":"xxxxxxxxxx"}"#, 5).is_err());
    }

    #[test]
    fn fail_bodies() {
        let f = FailRequest::from_json(br#"{"error":"smtp down"}"#, 100).unwrap();
        assert_eq!(f.error.as_deref(), Some("smtp down"));
        assert!(FailRequest::from_json(br#"{"error":{"a":1}}"#, 100)
            .unwrap_err()
            .message
            .contains("error must be a string"));
        assert!(FailRequest::from_json(br#"{"error":"long"}"#, 2).is_err());
    }
}
