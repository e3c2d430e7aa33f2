//! A cluster's webhook registry (`hopper_webhooks`): every slot server reads it, so a
//! webhook added through any broker fires from each slot's owner for that slot's events,
//! and survives failovers and restarts. Documents are the server's JSON (`webhooks.py`),
//! stored as jsonb; only `enabled` is changed in place.
//!
//! One connection, opened when first used and again after it failed, so a database
//! that went away costs one failed call, not a dead store.

use postgres::Client;

use crate::connect::connect;
use crate::error::ClusterError;

pub struct WebhookStore {
    url: String,
    namespace: String,
    client: Option<Client>,
}

impl WebhookStore {
    /// The registry of the cluster `namespace` at `url`; connects when first used.
    pub fn new(url: &str, namespace: &str) -> WebhookStore {
        WebhookStore {
            url: url.to_owned(),
            namespace: namespace.to_owned(),
            client: None,
        }
    }

    /// Every webhook of the namespace: (id, JSON document), by id.
    pub fn list(&mut self) -> Result<Vec<(String, String)>, ClusterError> {
        let namespace = self.namespace.clone();
        self.with_client(|c| {
            let rows = c.query(
                "SELECT id, doc::text FROM hopper_webhooks WHERE namespace = $1 ORDER BY id",
                &[&namespace],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    /// Adds (or replaces) the webhook `id` with the JSON document `doc`.
    pub fn insert(&mut self, id: &str, doc: &str) -> Result<(), ClusterError> {
        let namespace = self.namespace.clone();
        self.with_client(|c| {
            c.execute(
                "INSERT INTO hopper_webhooks (namespace, id, doc) VALUES ($1, $2, $3::text::jsonb)
                 ON CONFLICT (namespace, id) DO UPDATE SET doc = EXCLUDED.doc",
                &[&namespace, &id, &doc],
            )?;
            Ok(())
        })
    }

    /// Removes the webhook `id`; whether there was one.
    pub fn delete(&mut self, id: &str) -> Result<bool, ClusterError> {
        let namespace = self.namespace.clone();
        self.with_client(|c| {
            let n = c.execute(
                "DELETE FROM hopper_webhooks WHERE namespace = $1 AND id = $2",
                &[&namespace, &id],
            )?;
            Ok(n > 0)
        })
    }

    /// Sets the webhook `id`'s `enabled`; whether there is one.
    pub fn set_enabled(&mut self, id: &str, enabled: bool) -> Result<bool, ClusterError> {
        let namespace = self.namespace.clone();
        self.with_client(|c| {
            let n = c.execute(
                "UPDATE hopper_webhooks SET doc = jsonb_set(doc, '{enabled}', to_jsonb($3::boolean))
                 WHERE namespace = $1 AND id = $2",
                &[&namespace, &id, &enabled],
            )?;
            Ok(n > 0)
        })
    }

    /// Runs `f` on the connection (opened if needed); a failure drops it, so the next
    /// call connects afresh. Each statement commits on its own (autocommit).
    fn with_client<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, ClusterError>,
    ) -> Result<T, ClusterError> {
        let client = match self.client.take() {
            Some(c) if !c.is_closed() => self.client.insert(c),
            _ => self.client.insert(connect(&self.url)?),
        };
        let out = f(client);
        if out.is_err() {
            self.client = None;
        }
        out
    }
}
