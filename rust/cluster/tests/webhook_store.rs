//! The cluster's webhook registry (`hopper_webhooks`) against a real PostgreSQL
//! (`common/mod.rs`), each test in a namespace of its own. Skipped (saying so) without
//! PostgreSQL, unless `HOPPER_REQUIRE_POSTGRES=1`.

use hopper_cluster::{prepare, WebhookStore};
use serde_json::{json, Value as Json};

mod common;

fn store(namespace: &str) -> Option<WebhookStore> {
    let url = common::postgres_url()?;
    prepare(url, namespace, 1).expect("schema migrated");
    Some(WebhookStore::new(url, namespace))
}

fn docs(store: &mut WebhookStore) -> Vec<(String, Json)> {
    let rows = store.list().expect("list");
    rows.into_iter()
        .map(|(id, doc)| (id, serde_json::from_str(&doc).expect("a JSON document")))
        .collect()
}

#[test]
fn insert_list_update_delete() {
    let Some(mut s) = store("webhooks-crud") else {
        return;
    };
    assert!(docs(&mut s).is_empty());
    let a = json!({"id": "a", "url": "http://h/a", "events": ["job.completed"],
                   "queue": null, "secret": "s", "createdAt": 1, "enabled": true});
    let b = json!({"id": "b", "url": "http://h/b", "events": ["job.failed"],
                   "queue": "q", "secret": null, "createdAt": 2, "enabled": true});
    s.insert("b", &b.to_string()).unwrap();
    s.insert("a", &a.to_string()).unwrap();
    assert_eq!(
        docs(&mut s),
        vec![("a".into(), a.clone()), ("b".into(), b.clone())]
    );

    assert!(s.set_enabled("a", false).unwrap());
    let mut a_off = a.clone();
    a_off["enabled"] = json!(false);
    assert_eq!(docs(&mut s)[0], ("a".into(), a_off));
    assert!(!s.set_enabled("missing", true).unwrap());

    assert!(s.delete("b").unwrap());
    assert!(!s.delete("b").unwrap());
    assert_eq!(docs(&mut s).len(), 1);
}

#[test]
fn namespaces_keep_apart() {
    let (Some(mut one), Some(mut two)) = (store("webhooks-one"), store("webhooks-two")) else {
        return;
    };
    one.insert("x", r#"{"id": "x"}"#).unwrap();
    assert!(docs(&mut two).is_empty());
    assert!(!two.delete("x").unwrap());
    assert!(!two.set_enabled("x", false).unwrap());
    assert_eq!(docs(&mut one), vec![("x".into(), json!({"id": "x"}))]);
}

#[test]
fn bad_document_is_an_error_and_the_store_recovers() {
    let Some(mut s) = store("webhooks-bad") else {
        return;
    };
    let err = s.insert("x", "not json").unwrap_err();
    assert!(err.to_string().starts_with("PostgreSQL: "), "{err}");
    // The failed call dropped the connection; the next one opens another.
    s.insert("x", r#"{"enabled": true}"#).unwrap();
    assert_eq!(docs(&mut s), vec![("x".into(), json!({"enabled": true}))]);
}

#[test]
fn unreachable_database_is_an_error() {
    // A port nothing listens on (the test's own server is elsewhere).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut s = WebhookStore::new(
        &format!("postgresql://hopper@127.0.0.1:{port}/hopper"),
        "webhooks-down",
    );
    let err = s.list().unwrap_err();
    assert!(err.is_transient(), "{err}");
}
