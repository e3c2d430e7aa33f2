//! One connection's driver: keeps up to `window` operations in flight, starts each when
//! its schedule says so, matches replies (by `reqId`, or in order on HTTP), chains a pull's
//! ack, and records each finished operation. No allocation per operation: requests are
//! written into one reused send buffer, replies parsed in place in one receive buffer,
//! and the in-flight table is a fixed slab indexed by the low bits of the `reqId`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::run::Shared;
use crate::schedule::{Next, Schedule};
use crate::wire::{Jobs, Marks, Parsed, Reply, Wire};

const TICK_NS: u64 = 100_000_000;
const READ_CHUNK: usize = 64 * 1024;

/// What a connection does.
pub enum Role {
    /// push (or bulk push) on a schedule; series 0.
    Push { bulk: bool },
    /// pull without waiting, then ack that job (`batch`: PULLB, then ACKB of all it
    /// got); an empty pull ends the run.
    PullAck { batch: bool },
    /// e2e producer: pushes jobs carrying their marks.
    Producer,
    /// e2e worker: long-poll pulls, acks, records push -> ack from the marks.
    Worker,
    /// pushes (series 0) and long-poll pull + acks (series 1) in the ratio of `mix`.
    Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Push,
    Bulk,
    Pull { wait: u64 },
    Ack,
    PullB,
    AckB { jobs: u32 },
    WorkerPull,
    WorkerAck(Option<Marks>),
}

#[derive(Clone, Copy)]
struct Slot {
    req: u32,
    active: bool,
    op: Op,
    series: usize,
    intended: u64,
    sent: u64,
    measured: bool,
    deadline: u64,
}

/// Why a driver ended early.
pub struct Lost(pub String);

pub struct Driver<W: Wire> {
    sock: TcpStream,
    rbuf: Vec<u8>,
    rlen: usize,
    st: State<W>,
}

struct State<W: Wire> {
    wire: W,
    wbuf: Vec<u8>,
    shared: Arc<Shared>,
    thread: usize,
    role: Role,
    scheds: [Option<Schedule>; 2],
    slots: Vec<Slot>,
    free: Vec<u16>,
    in_order: Option<VecDeque<u16>>,
    seq: u16,
    queue_rr: usize,
    mix_turn: u64,
    issuing: bool,
    permits: usize,
    need_permit: bool,
    /// mixed: pulls that found the queue empty, to send again (intended, measured, sent).
    retry: Vec<(u64, bool, u64)>,
}

impl<W: Wire> Driver<W> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sock: TcpStream,
        leftover: &[u8],
        wire: W,
        shared: Arc<Shared>,
        thread: usize,
        role: Role,
        scheds: [Option<Schedule>; 2],
        in_order: bool,
    ) -> Driver<W> {
        let window = shared.cfg.window();
        let mut rbuf = vec![0u8; READ_CHUNK.max(leftover.len() * 2)];
        rbuf[..leftover.len()].copy_from_slice(leftover);
        let slot = Slot {
            req: 0,
            active: false,
            op: Op::Push,
            series: 0,
            intended: 0,
            sent: 0,
            measured: false,
            deadline: 0,
        };
        Driver {
            sock,
            rlen: leftover.len(),
            rbuf,
            st: State {
                wire,
                wbuf: Vec::with_capacity(READ_CHUNK),
                thread,
                role,
                scheds,
                slots: vec![slot; window],
                free: (0..window as u16).rev().collect(),
                in_order: in_order.then(|| VecDeque::with_capacity(window)),
                seq: 0,
                queue_rr: thread,
                mix_turn: 0,
                issuing: true,
                permits: 0,
                need_permit: false,
                retry: Vec::with_capacity(window),
                shared,
            },
        }
    }

    /// Runs until the schedule is done and every answer is in (or the run stops).
    pub async fn run(mut self) -> Result<(), Lost> {
        let shared = self.st.shared.clone();
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        // the deadline the timer is set to: re-armed only when it fired or a slot is due
        // sooner (re-arming on every turn would cost a timer-wheel update per request)
        let mut armed = 0u64;
        let result = loop {
            let now = shared.now();
            let due = self.st.issue(now);
            if !self.st.wbuf.is_empty() {
                if let Err(e) = self.sock.write_all(&self.st.wbuf).await {
                    break Err(Lost(format!("send failed: {e}")));
                }
                self.st.wbuf.clear();
            }
            if self.st.finished() {
                break Ok(());
            }
            let wake = due.unwrap_or(u64::MAX).min(now + TICK_NS);
            if armed <= now || wake < armed {
                sleep.as_mut().reset(shared.instant(wake).into());
                armed = wake;
            }
            if self.rlen == self.rbuf.len() {
                self.rbuf.resize(self.rbuf.len() * 2, 0);
            }
            let permits = &shared.permits;
            let need_permit = self.st.need_permit;
            let read = tokio::select! {
                r = self.sock.read(&mut self.rbuf[self.rlen..]) => Some(r),
                _ = &mut sleep => None,
                p = permits.acquire(), if need_permit => {
                    if let Ok(p) = p {
                        p.forget();
                        self.st.permits += 1;
                        self.st.need_permit = false;
                    }
                    None
                }
            };
            match read {
                Some(Ok(0)) => break Err(Lost("connection closed by the server".into())),
                Some(Err(e)) => break Err(Lost(format!("receive failed: {e}"))),
                Some(Ok(n)) => {
                    if self.rlen + n < self.rbuf.len() {
                        // A short read drained the socket: drop the readiness now rather
                        // than learn it from one more read that fails with WouldBlock (a
                        // syscall per answer). Safe with edge-triggered readiness: bytes
                        // that arrive after this read raise a new edge.
                        let _ = self.sock.try_io(Interest::READABLE, || {
                            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
                        });
                    }
                    self.rlen += n;
                    if let Err(e) = self.replies() {
                        break Err(e);
                    }
                }
                None => {
                    armed = 0;
                    if let Err(e) = self.st.expire(shared.now()) {
                        break Err(e);
                    }
                }
            }
        };
        self.st.finish(result.as_ref().err());
        result
    }

    fn replies(&mut self) -> Result<(), Lost> {
        let mut pos = 0;
        let want_marks = matches!(self.st.role, Role::Worker);
        loop {
            let parsed = self
                .st
                .wire
                .parse(&mut self.rbuf[pos..self.rlen], want_marks)
                .map_err(Lost)?;
            match parsed {
                Parsed::Incomplete => break,
                Parsed::Skip(n) => pos += n,
                Parsed::Reply(n, reply) => {
                    let now = self.st.shared.now();
                    self.st.on_reply(reply, now)?;
                    pos += n;
                }
            }
        }
        self.rbuf.copy_within(pos..self.rlen, 0);
        self.rlen -= pos;
        Ok(())
    }
}

impl<W: Wire> State<W> {
    fn window_free(&self) -> bool {
        !self.free.is_empty()
    }

    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn finished(&self) -> bool {
        !self.issuing && self.in_flight() == 0
    }

    fn next_queue(&mut self) -> usize {
        let q = self.queue_rr % self.shared.cfg.queues.len();
        self.queue_rr = self.queue_rr.wrapping_add(1);
        q
    }

    /// Takes a free slot for `op` and writes its request.
    fn send(&mut self, op: Op, series: usize, intended: u64, measured: bool, now: u64) -> u16 {
        let i = self.free.pop().expect("a free slot");
        self.start(i, op, series, intended, measured, now, None);
        i
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        i: u16,
        op: Op,
        series: usize,
        intended: u64,
        measured: bool,
        now: u64,
        jobs: Option<&Jobs<'_>>,
    ) {
        self.seq = self.seq.wrapping_add(1);
        let req = ((self.seq as u32) << 16) | i as u32;
        let cfg = &self.shared.cfg;
        let timeout = (cfg.timeout_s * 1e9) as u64;
        let wait_ns = match op {
            Op::Pull { wait } => wait * 1_000_000,
            Op::WorkerPull => cfg.poll_ms * 1_000_000,
            _ => 0,
        };
        let q = match op {
            Op::Push | Op::Bulk | Op::Pull { .. } | Op::PullB | Op::WorkerPull => self.next_queue(),
            _ => 0,
        };
        match op {
            Op::Push => {
                let marks = matches!(self.role, Role::Producer).then_some(Marks {
                    intended,
                    sent: now,
                    measured,
                });
                self.wire.push(&mut self.wbuf, req, q, marks);
            }
            Op::Bulk => self.wire.bulk(&mut self.wbuf, req, q),
            Op::Pull { wait } => self.wire.pull(&mut self.wbuf, req, q, wait),
            Op::WorkerPull => {
                let wait = self.shared.cfg.poll_ms;
                self.wire.pull(&mut self.wbuf, req, q, wait);
            }
            Op::PullB => self.wire.pull_batch(&mut self.wbuf, req, q),
            Op::Ack | Op::WorkerAck(_) => {
                let job = jobs.and_then(Jobs::first).expect("an ack has its job");
                self.wire.ack(&mut self.wbuf, req, &job);
            }
            Op::AckB { .. } => {
                let jobs = jobs.expect("an ack has its jobs");
                self.wire.ack_batch(&mut self.wbuf, req, jobs);
            }
        }
        self.slots[i as usize] = Slot {
            req,
            active: true,
            op,
            series,
            intended,
            sent: now,
            measured,
            deadline: now + timeout + wait_ns,
        };
        if let Some(fifo) = self.in_order.as_mut() {
            fifo.push_back(i);
        }
    }

    fn release(&mut self, i: u16) {
        self.slots[i as usize].active = false;
        self.free.push(i);
    }

    /// Starts what is due; returns when the next slot is due (open loop).
    fn issue(&mut self, now: u64) -> Option<u64> {
        if self.shared.stopped() {
            self.issuing = false;
        }
        while self.issuing && self.window_free() {
            match self.role {
                Role::Push { bulk } => {
                    match self.scheds[0].as_mut().expect("push schedule").next(now) {
                        Next::Go { intended, measured } => {
                            let op = if bulk { Op::Bulk } else { Op::Push };
                            self.send(op, 0, intended, measured, now);
                        }
                        Next::Wait(due) => return Some(due),
                        Next::Done => self.issuing = false,
                    }
                }
                Role::PullAck { batch } => {
                    match self.scheds[0].as_mut().expect("pull schedule").next(now) {
                        Next::Go { intended, measured } => {
                            let op = if batch {
                                Op::PullB
                            } else {
                                Op::Pull { wait: 0 }
                            };
                            self.send(op, 0, intended, measured, now);
                        }
                        Next::Wait(due) => return Some(due),
                        Next::Done => self.issuing = false,
                    }
                }
                Role::Producer => {
                    let closed = self.shared.cfg.rate.is_none();
                    if closed && self.permits == 0 {
                        match self.shared.permits.try_acquire() {
                            Ok(p) => {
                                p.forget();
                                self.permits += 1;
                            }
                            Err(_) => {
                                self.need_permit = true;
                                return None;
                            }
                        }
                    }
                    match self.scheds[0]
                        .as_mut()
                        .expect("producer schedule")
                        .next(now)
                    {
                        Next::Go { intended, measured } => {
                            if closed {
                                self.permits -= 1;
                            }
                            self.send(Op::Push, 0, intended, measured, now);
                        }
                        Next::Wait(due) => return Some(due),
                        Next::Done => self.issuing = false,
                    }
                }
                Role::Worker => {
                    if self.shared.workers_may_stop(now) {
                        self.issuing = false;
                    } else {
                        self.send(Op::WorkerPull, 0, now, false, now);
                    }
                }
                Role::Mixed => return self.issue_mixed(now),
            }
        }
        None
    }

    fn issue_mixed(&mut self, now: u64) -> Option<u64> {
        let (p, q) = self.shared.cfg.mix;
        let wait = self.shared.cfg.poll_ms;
        while self.window_free() {
            // closed loop: the ratio picks the side; open loop: each side's own timetable
            let turn = if (self.mix_turn % (p + q) as u64) < p as u64 {
                0
            } else {
                1
            };
            let mut due = None;
            let mut went = false;
            for side in [turn, 1 - turn] {
                if side == 1 && self.scheds[1].is_some() {
                    if let Some((intended, measured, sent)) = self.retry.pop() {
                        let i = self.send(Op::Pull { wait }, 1, intended, measured, now);
                        self.slots[i as usize].sent = sent;
                        went = true;
                        break;
                    }
                }
                let Some(s) = self.scheds[side].as_mut() else {
                    continue;
                };
                match s.next(now) {
                    Next::Go { intended, measured } => {
                        let op = if side == 0 {
                            Op::Push
                        } else {
                            Op::Pull { wait }
                        };
                        self.send(op, side, intended, measured, now);
                        went = true;
                        break;
                    }
                    Next::Wait(d) => due = Some(due.map_or(d, |x: u64| x.min(d))),
                    Next::Done => {
                        self.scheds[side] = None;
                        if side == 0 {
                            self.shared
                                .mixed_pushers_done
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            self.mix_turn += 1;
            if !went {
                if self.scheds.iter().all(Option::is_none) {
                    self.issuing = false;
                }
                return due;
            }
        }
        None
    }

    fn on_reply(&mut self, reply: Reply<'_>, now: u64) -> Result<(), Lost> {
        let i = match reply.req_id {
            Some(req) => {
                let i = (req & 0xffff) as u16;
                match self.slots.get(i as usize) {
                    Some(s) if s.active && s.req as u64 == req => i,
                    _ => return Ok(()), // late answer to a request that timed out
                }
            }
            None => match self.in_order.as_mut().and_then(VecDeque::pop_front) {
                Some(i) => i,
                None => return Err(Lost("an answer to no request".into())),
            },
        };
        let s = self.slots[i as usize];
        let shared = self.shared.clone();
        let series = &shared.series[s.series];
        let fail = |what: &str| {
            let text = String::from_utf8_lossy(reply.error.unwrap_or(b"ok: false"));
            format!("{what}{text}")
        };
        match s.op {
            Op::Push | Op::Bulk | Op::Ack | Op::AckB { .. } => {
                if reply.ok {
                    if !matches!(self.role, Role::Producer) {
                        let jobs = match s.op {
                            Op::Bulk => shared.cfg.batch as u64,
                            Op::AckB { jobs } => jobs as u64,
                            _ => 1,
                        };
                        series.record(self.thread, s.measured, (s.intended, s.sent, now), jobs);
                    } else if s.measured {
                        // e2e: recorded when a worker acks the job
                        shared.pushed_measured.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    series.error(s.measured, now, || {
                        fail(if matches!(s.op, Op::Ack | Op::AckB { .. }) {
                            "ack: "
                        } else {
                            ""
                        })
                    });
                    if matches!(self.role, Role::Producer) {
                        shared.permits.add_permits(1);
                    }
                }
                self.release(i);
            }
            Op::Pull { .. } | Op::PullB => match (reply.jobs.len(), reply.ok) {
                (_, false) => {
                    series.error(s.measured, now, || fail("pull: "));
                    self.release(i);
                }
                (0, true) => {
                    series.empty.fetch_add(1, Ordering::Relaxed);
                    // a pull that does not wait (pullack, pullb) found the queue dry
                    if !matches!(s.op, Op::Pull { wait } if wait > 0) {
                        shared.stop("queue ran dry");
                        self.release(i);
                    } else if shared.mixed_pushers_done.load(Ordering::Relaxed)
                        >= shared.mixed_connections
                    {
                        shared
                            .note_once("mixed: pulls stopped: no jobs left after the pushes ended");
                        self.scheds[1] = None;
                        if self.scheds.iter().all(Option::is_none) {
                            self.issuing = false;
                        }
                        self.release(i);
                    } else {
                        // again later (its latency includes the wait for a job); the
                        // slot is freed meanwhile so that pushes can go out
                        self.retry.push((s.intended, s.measured, s.sent));
                        self.release(i);
                    }
                }
                (n, true) => {
                    let op = if s.op == Op::PullB {
                        Op::AckB { jobs: n as u32 }
                    } else {
                        Op::Ack
                    };
                    self.restart(i, op, &s, now, Some(&reply.jobs));
                }
            },
            Op::WorkerPull => match (reply.jobs.first(), reply.ok) {
                (_, false) => {
                    shared.worker_pull_errors.fetch_add(1, Ordering::Relaxed);
                    shared.note_once(&format!("e2e: a worker pull failed: {}", fail("")));
                    self.release(i);
                }
                (None, true) => self.release(i),
                (Some(job), true) => {
                    self.restart(i, Op::WorkerAck(job.marks), &s, now, Some(&reply.jobs));
                }
            },
            Op::WorkerAck(marks) => {
                match marks {
                    Some(m) => {
                        if reply.ok {
                            series.record(self.thread, m.measured, (m.intended, m.sent, now), 1);
                        } else {
                            series.error(m.measured, now, || fail("ack: "));
                        }
                        if m.measured {
                            shared.acked_measured.fetch_add(1, Ordering::Relaxed);
                        }
                        if shared.cfg.rate.is_none() {
                            shared.permits.add_permits(1);
                        }
                    }
                    None => {
                        shared.foreign.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.release(i);
            }
        }
        Ok(())
    }

    /// The same slot goes on with a follow-up request (an ack, or a pull again).
    fn restart(&mut self, i: u16, op: Op, s: &Slot, now: u64, jobs: Option<&Jobs<'_>>) {
        let (intended, sent) = (s.intended, s.sent);
        self.start(i, op, s.series, intended, s.measured, now, jobs);
        self.slots[i as usize].sent = sent;
    }

    /// Requests past their deadline fail; on HTTP that ends the connection (the answers
    /// that may still come could not be told apart).
    fn expire(&mut self, now: u64) -> Result<(), Lost> {
        if now >= self.shared.window().hard_end {
            self.shared
                .stop("time limit reached with requests in flight");
            return Err(Lost("time limit reached".into()));
        }
        for i in 0..self.slots.len() {
            let s = self.slots[i];
            if !s.active || now < s.deadline {
                continue;
            }
            if self.in_order.is_some() {
                return Err(Lost(format!(
                    "no answer within {} s",
                    self.shared.cfg.timeout_s
                )));
            }
            self.fail_slot(i as u16, now, "no answer within the timeout");
            self.release(i as u16);
        }
        if matches!(self.role, Role::Worker) && self.shared.workers_may_stop(now) {
            // outstanding long polls are not measured operations: leave them
            self.issuing = false;
            for i in 0..self.slots.len() as u16 {
                if self.slots[i as usize].active && self.slots[i as usize].op == Op::WorkerPull {
                    self.release(i);
                }
            }
        }
        Ok(())
    }

    fn fail_slot(&self, i: u16, now: u64, why: &str) {
        let s = self.slots[i as usize];
        match s.op {
            Op::WorkerPull => {}
            Op::WorkerAck(Some(m)) => {
                self.shared.series[s.series].error(m.measured, now, || format!("ack: {why}"));
                if m.measured {
                    self.shared.acked_measured.fetch_add(1, Ordering::Relaxed);
                }
            }
            Op::WorkerAck(None) => {}
            _ => self.shared.series[s.series].error(s.measured, now, || why.to_string()),
        }
    }

    /// At the end: what is still in flight fails; the connection's share of the run ends.
    fn finish(&mut self, lost: Option<&Lost>) {
        let now = self.shared.now();
        if let Some(Lost(why)) = lost {
            for i in 0..self.slots.len() as u16 {
                if self.slots[i as usize].active {
                    self.fail_slot(i, now, why);
                }
            }
            if self.shared.window().hard_end > now {
                self.shared.stop(&format!("connection lost: {why}"));
            }
        }
        if self.permits > 0 {
            self.shared.permits.add_permits(self.permits);
        }
        match self.role {
            Role::Producer => self.shared.producer_done(now),
            Role::Mixed if self.scheds[0].is_some() => {
                self.shared
                    .mixed_pushers_done
                    .fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}
