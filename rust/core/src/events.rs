//! Job events, buffered in the engine and handed to Python in batches (one wake-up of
//! the notification fd per batch, never one callback per job). The buffer is bounded:
//! when nobody drains it, the oldest events are dropped and counted.

use std::collections::VecDeque;

use crate::ids::JobId;
use crate::job::JobState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Pushed,
    Pulled,
    Completed,
    Failed,
    Progress,
    Stalled,
    Removed,
    Delayed,
    Duplicated,
    Retried,
    WaitingChildren,
    Drained,
    Paused,
    Resumed,
    /// A delayed job made ready before its time.
    Promoted,
}

impl EventKind {
    /// The `eventType` string of the job server's event stream.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Pushed => "pushed",
            EventKind::Pulled => "pulled",
            EventKind::Completed => "completed",
            EventKind::Failed => "failed",
            EventKind::Progress => "progress",
            EventKind::Stalled => "stalled",
            EventKind::Removed => "removed",
            EventKind::Delayed => "delayed",
            EventKind::Duplicated => "duplicated",
            EventKind::Retried => "retried",
            EventKind::WaitingChildren => "waiting-children",
            EventKind::Drained => "drained",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::Promoted => "promoted",
        }
    }
}

/// The extra field an event carries, per the job server's event table.
#[derive(Debug, Clone, PartialEq)]
pub enum EventExtra {
    None,
    Data(Box<str>),
    Error(Box<str>),
    /// The percentage, and the message a worker sent with it (bunqueue's protocol).
    Progress(u8, Option<Box<str>>),
    Prev(JobState),
    Delay(u64),
    Result(Box<str>),
    /// A paused/resumed job name (`None` = the whole queue).
    Name(Option<Box<str>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub queue: std::sync::Arc<str>,
    pub job_id: Option<JobId>,
    pub timestamp: u64,
    pub extra: EventExtra,
}

#[derive(Debug)]
pub struct EventBuffer {
    enabled: bool,
    capacity: usize,
    events: VecDeque<Event>,
    dropped: u64,
}

impl EventBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            enabled: false,
            capacity,
            events: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Events are recorded only once someone consumes them (a server or a subscriber).
    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
        if !on {
            self.events.clear();
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn push(&mut self, event: Event) {
        if !self.enabled {
            return;
        }
        if self.events.len() >= self.capacity {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn take(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: u64) -> Event {
        Event {
            kind: EventKind::Pushed,
            queue: "q".into(),
            job_id: None,
            timestamp: ts,
            extra: EventExtra::None,
        }
    }

    #[test]
    fn disabled_records_nothing_and_full_buffer_drops_oldest() {
        let mut b = EventBuffer::new(2);
        b.push(ev(1));
        assert!(b.is_empty());
        b.set_enabled(true);
        for ts in 1..=3 {
            b.push(ev(ts));
        }
        let got: Vec<u64> = b.take().iter().map(|e| e.timestamp).collect();
        assert_eq!(got, vec![2, 3]);
        assert_eq!(b.dropped(), 1);
    }
}
