//! The registry of caller-chosen job ids (`hopper_ids`): which slot each such id was
//! pushed to. A generated id carries its slot; a caller's `jobId` does not, so without
//! the registry a front asks every owner for it, and the same id pushed to queues of two
//! slots would make two jobs. The fronts claim an id for its queue's slot before
//! forwarding its push, and look ids up before asking every owner.
//!
//! The registry is a hint, never required: a database error, a slow answer (over
//! `OP_TIMEOUT`) or a missing row sends the request the way it went without one (a push
//! to its queue's slot, a lookup to every owner), and rows may be deleted at any time.
//! Queries run on `tokio-postgres` connections from the routers' own tasks (pipelined,
//! so a few connections serve every client); no tokio worker waits on a socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hopper_core::Value;
use tokio::time::{timeout, Instant};
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::command_route::{batch_ids, registry_step, Known};

/// Connections per registry: each pipelines its queries, so two are plenty for a front.
const POOL: usize = 2;
/// The longest a request waits for the registry before going its way without it.
const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// After a failed connect, requests skip the registry this long instead of each waiting
/// for a database that is down.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Rounds of claim, ask and move for one push before it goes to its queue's slot: more
/// than one only while other fronts move the same id's row at the same time.
const ROUNDS: usize = 3;
/// A row touched this recently may have a push on its way to its slot (through another
/// front, racing this one): its owner is asked again until then before the row moves. A
/// push reaches a live owner within milliseconds; while the slot has no owner, the
/// question waits for the next one as the push does. The cost: an id pushed to another
/// slot's queue within this of its last push (its job removed meanwhile) waits it out.
const CLAIM_GRACE: Duration = Duration::from_secs(2);
/// Between two questions to the owner within `CLAIM_GRACE`.
const CLAIM_POLL: Duration = Duration::from_millis(50);

/// What the registry asks of a request before it is routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A push with a caller-chosen id to a queue of this slot: claim the id for it.
    Claim(String, u32),
    /// A request naming a caller-chosen id: its registered slot, if any.
    Lookup(String),
    /// A batch's caller-chosen ids, each with its queue's slot: registered where no row
    /// exists yet, and the batch goes to its queue's slot whatever the rows say.
    Register(Vec<(String, u32)>),
}

/// The registry's answer for a protocol command (`Registry::decide_command`).
pub(crate) enum Decision {
    /// A push to send, whole, to this slot.
    Send(u32),
    /// Route the command with these registered slots of its caller-chosen ids.
    Route(Known),
}

/// Asks the owner of a slot whether it holds a job id (the routers' probe), for a claim
/// that finds the id registered to another slot.
pub(crate) trait Holds {
    type Error;
    async fn holds(&mut self, slot: u32, id: &str) -> Result<bool, Self::Error>;
}

/// A claim's answer: the slot the id is registered to, and how long before the claim
/// its row was last touched (zero for a row just made).
#[derive(Debug, Clone, Copy)]
struct Claim {
    slot: u32,
    age: Duration,
}

/// One connection and its prepared statements.
struct Session {
    client: Client,
    claim: Statement,
    lookup: Statement,
    moved: Statement,
    register: Statement,
}

pub struct Registry {
    config: Config,
    namespace: String,
    pool: Vec<tokio::sync::Mutex<Option<Arc<Session>>>>,
    next: AtomicUsize,
    /// While set and in the future, the registry is skipped (a connect failed).
    down_until: Mutex<Option<Instant>>,
    /// `CLAIM_GRACE`, unless a test sets another.
    claim_grace: Duration,
}

impl Registry {
    /// A registry of the cluster `namespace` at `url`; connects when first used.
    pub fn new(url: &str, namespace: &str) -> Result<Arc<Registry>, tokio_postgres::Error> {
        Registry::with_claim_grace(url, namespace, CLAIM_GRACE)
    }

    /// `new`, waiting `grace` for a racing push instead of `CLAIM_GRACE` (for tests).
    pub fn with_claim_grace(
        url: &str,
        namespace: &str,
        grace: Duration,
    ) -> Result<Arc<Registry>, tokio_postgres::Error> {
        let mut config: Config = url.parse()?;
        config
            .connect_timeout(OP_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        Ok(Arc::new(Registry {
            config,
            namespace: namespace.to_owned(),
            pool: (0..POOL).map(|_| tokio::sync::Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            down_until: Mutex::new(None),
            claim_grace: grace,
        }))
    }

    /// What the registry decides for a protocol command (TCP or `/ws`): the slot a
    /// push's claim sends it to, or the registered slots of the ids it names (none for
    /// most commands), for `Router::request`.
    pub(crate) async fn decide_command<H: Holds>(
        &self,
        req: &Value,
        slots: u32,
        owners: &mut H,
    ) -> Result<Decision, H::Error> {
        Ok(match registry_step(req, slots) {
            Some(Step::Claim(id, slot)) => {
                Decision::Send(self.route_push(owners, &id, slot).await?)
            }
            Some(Step::Lookup(id)) => Decision::Route(self.lookup_many(&[id]).await),
            Some(Step::Register(ids)) => {
                self.register(&ids).await;
                Decision::Route(Known::new())
            }
            None => Decision::Route(self.lookup_many(&batch_ids(req, slots)).await),
        })
    }

    /// The slot a push of `id` to a queue of `slot` goes to: `slot` once the id is
    /// claimed for it (or the registry cannot say); the registered slot if its owner
    /// holds the id (which answers the push as a duplicate), or comes to hold it within
    /// `CLAIM_GRACE` of the row's last touch; else the row moves to `slot` (the job was
    /// removed), unless another front moved it meanwhile, in which case the claim runs
    /// again.
    pub(crate) async fn route_push<H: Holds>(
        &self,
        owners: &mut H,
        id: &str,
        slot: u32,
    ) -> Result<u32, H::Error> {
        for _ in 0..ROUNDS {
            let Some(claim) = self.claim(id, slot).await else {
                return Ok(slot);
            };
            if claim.slot == slot {
                return Ok(slot);
            }
            if held_within(owners, claim, id, self.claim_grace).await? {
                return Ok(claim.slot);
            }
            if self.move_row(id, claim.slot, slot).await != Some(false) {
                return Ok(slot);
            }
        }
        Ok(slot)
    }

    /// Moves `id`'s row from `from` to `to`, where a lookup found the job, so the next
    /// lookup goes straight there; in a task of its own, as the answer does not wait
    /// for it. A row moved or deleted meanwhile by another front is left as it is.
    pub(crate) fn repair(self: &Arc<Self>, id: String, from: u32, to: u32) {
        let registry = self.clone();
        tokio::spawn(async move { registry.move_row(&id, from, to).await });
    }

    /// The slot registered for `id`, if any (and the registry answers).
    pub(crate) async fn lookup(&self, id: &str) -> Option<u32> {
        self.lookup_many(&[id.to_owned()]).await.remove(id)
    }

    /// The registered slots of those of `ids` that have one (none if the registry does
    /// not answer).
    pub(crate) async fn lookup_many(&self, ids: &[String]) -> HashMap<String, u32> {
        if ids.is_empty() {
            return HashMap::new();
        }
        let rows = self
            .run(|s| async move { s.client.query(&s.lookup, &[&self.namespace, &ids]).await })
            .await
            .unwrap_or_default();
        rows.iter()
            .filter_map(|r| {
                let slot = r.get::<_, Option<i32>>(1)?;
                Some((r.get(0), u32::try_from(slot).ok()?))
            })
            .collect()
    }

    /// Registers each id not registered yet for its slot, and touches those that are (a
    /// batch's ids).
    pub(crate) async fn register(&self, ids: &[(String, u32)]) {
        let (names, slots): (Vec<&str>, Vec<i32>) =
            ids.iter().map(|(id, s)| (id.as_str(), *s as i32)).unzip();
        self.run(|s| async move {
            s.client
                .execute(&s.register, &[&self.namespace, &names, &slots])
                .await
        })
        .await;
    }

    /// Inserts `id` for `slot` unless registered (else touches its row), and returns
    /// its registered slot and the row's age.
    async fn claim(&self, id: &str, slot: u32) -> Option<Claim> {
        let slot = slot as i32;
        let row = self
            .run(|s| async move {
                s.client
                    .query_one(&s.claim, &[&self.namespace, &id, &slot])
                    .await
            })
            .await?;
        let age = row.get::<_, f64>(1);
        Some(Claim {
            slot: u32::try_from(row.get::<_, i32>(0)).ok()?,
            // Negative when another front touched it after this transaction began.
            age: Duration::try_from_secs_f64(age.max(0.0)).unwrap_or(Duration::MAX),
        })
    }

    /// Moves `id`'s row from slot `from` to `to`: `Some(false)` if the row no longer
    /// names `from` (another front moved or deleted it).
    async fn move_row(&self, id: &str, from: u32, to: u32) -> Option<bool> {
        let (from, to) = (from as i32, to as i32);
        let moved = self
            .run(|s| async move {
                s.client
                    .execute(&s.moved, &[&self.namespace, &id, &from, &to])
                    .await
            })
            .await?;
        Some(moved == 1)
    }

    /// Runs `query` on a pooled session, within `OP_TIMEOUT`; `None` on any failure.
    async fn run<'a, T, F, Fut>(&'a self, query: F) -> Option<T>
    where
        F: FnOnce(Arc<Session>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>> + 'a,
    {
        let ran = timeout(OP_TIMEOUT, async {
            let session = self.session().await?;
            query(session).await.ok()
        });
        ran.await.ok().flatten()
    }

    /// A pooled session, connected (and prepared) now if it was not or has closed.
    async fn session(&self) -> Option<Arc<Session>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        let mut slot = self.pool[i].lock().await;
        if let Some(s) = slot.as_ref().filter(|s| !s.client.is_closed()) {
            return Some(s.clone());
        }
        *slot = None;
        let down = *self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if down.is_some_and(|until| Instant::now() < until) {
            return None;
        }
        match self.connect().await {
            Ok(s) => {
                let s = Arc::new(s);
                *slot = Some(s.clone());
                Some(s)
            }
            Err(_) => {
                let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
                *down = Some(Instant::now() + RETRY_AFTER);
                None
            }
        }
    }

    async fn connect(&self) -> Result<Session, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(connection);
        // A claim need not wait for its row to reach the disk: a row lost with a
        // PostgreSQL crash is a deleted row, which is always safe (the id is asked of
        // every owner again). Other sessions see it at commit either way.
        client.batch_execute("SET synchronous_commit = off").await?;
        // One statement per claim: the insert, else the row there, touched so that its
        // slot's owner does not sweep it while this push is on its way there
        // (`registry_sweep.rs`), with its age before this touch (`prev` reads the
        // statement's snapshot; a row inserted since by another front reads as new).
        let claim = client
            .prepare(
                "WITH prev AS (SELECT touched FROM hopper_ids WHERE namespace = $1 AND job_id = $2)
                 INSERT INTO hopper_ids (namespace, job_id, slot) VALUES ($1, $2, $3)
                 ON CONFLICT (namespace, job_id) DO UPDATE SET touched = now()
                 RETURNING slot,
                     extract(epoch FROM now() - coalesce((SELECT touched FROM prev), now()))::float8",
            )
            .await?;
        // Each id's row is read by a subquery of its own, a primary-key lookup whatever
        // the table's statistics say: `job_id = ANY($2)` was planned, on a table grown
        // since its last analyze, as a scan of the namespace's rows (milliseconds per
        // lookup at 7,000 rows). A slot is null where an id has no row.
        let lookup = client
            .prepare(
                "SELECT u.id, (SELECT slot FROM hopper_ids WHERE namespace = $1 AND job_id = u.id)
                 FROM unnest($2::text[]) AS u(id)",
            )
            .await?;
        let moved = client
            .prepare(
                "UPDATE hopper_ids SET slot = $4, touched = now()
                 WHERE namespace = $1 AND job_id = $2 AND slot = $3",
            )
            .await?;
        // Rows there are touched too (a batch's push is on its way); in id order, so two
        // batches sharing ids lock their rows in the same order.
        let register = client
            .prepare(
                "INSERT INTO hopper_ids (namespace, job_id, slot)
                 SELECT DISTINCT ON (id) $1, id, slot
                 FROM unnest($2::text[], $3::int[]) AS u(id, slot) ORDER BY id
                 ON CONFLICT (namespace, job_id) DO UPDATE SET touched = now()",
            )
            .await?;
        Ok(Session {
            client,
            claim,
            lookup,
            moved,
            register,
        })
    }
}

/// Whether the owner of `claim.slot` holds `id`, asked again until the row's last touch
/// is `grace` old: a push that touched it that recently may still be on its way there,
/// and moving the row now would make a second job.
async fn held_within<H: Holds>(
    owners: &mut H,
    claim: Claim,
    id: &str,
    grace: Duration,
) -> Result<bool, H::Error> {
    let until = Instant::now() + grace.saturating_sub(claim.age);
    loop {
        if owners.holds(claim.slot, id).await? {
            return Ok(true);
        }
        if Instant::now() >= until {
            return Ok(false);
        }
        tokio::time::sleep(CLAIM_POLL).await;
    }
}
