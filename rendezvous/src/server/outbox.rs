//! A connection's outbox: everything waiting to be written to it, in one allocation.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

use super::hub::lock;

/// Everything waiting for one connection, in one allocation: relayed messages (bounded),
/// the newest presence update (older ones are superseded: a family reconnecting at once
/// costs each member one pending presence, not O(n)), and a kick. Lighter than a channel
/// per connection, which matters at 15,000 idle connections.
#[derive(Debug)]
pub struct Outbox {
    notify: Notify,
    state: Mutex<OutState>,
    cap: usize,
}

#[derive(Debug, Default)]
struct OutState {
    queue: VecDeque<Bytes>,
    presence: Option<Bytes>,
    kick: Option<(u16, &'static str)>,
    ping: bool,
}

/// What a connection does next.
#[derive(Debug)]
pub enum Out {
    /// Close with this code and reason.
    Kick(u16, &'static str),
    /// Frames are waiting: collect them with [`Outbox::take`].
    Frames,
    /// Liveness round: close if silent too long, else send a WebSocket ping. Driven by one
    /// server-wide ticker instead of a timer per connection.
    Ping,
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The outbox is full: the reader is too slow.
    Queue,
    /// The connection has been told to close: what is queued now would never be written,
    /// so the message must take another path (the device's next connection, its mailbox).
    Closing,
}

impl Outbox {
    /// An outbox holding at most `cap` relayed messages.
    pub fn new(cap: usize) -> Self {
        Self { notify: Notify::new(), state: Mutex::new(OutState::default()), cap: cap.max(1) }
    }

    /// Queues a relayed message (a whole WebSocket frame).
    pub fn push(&self, text: Bytes) -> Result<(), Full> {
        let mut st = lock(&self.state);
        if st.kick.is_some() {
            return Err(Full::Closing);
        }
        if st.queue.len() >= self.cap {
            return Err(Full::Queue);
        }
        st.queue.push_back(text);
        drop(st);
        self.notify.notify_one();
        Ok(())
    }

    /// Replaces the pending presence update (a whole WebSocket frame).
    pub fn set_presence(&self, text: Bytes) {
        lock(&self.state).presence = Some(text);
        self.notify.notify_one();
    }

    /// Asks the connection to close (policy violation, 1008).
    pub fn kick(&self, reason: &'static str) {
        self.kick_with(1008, reason);
    }

    /// Asks the connection to close with `code`.
    pub fn kick_with(&self, code: u16, reason: &'static str) {
        lock(&self.state).kick.get_or_insert((code, reason));
        self.notify.notify_one();
    }

    /// Asks the connection for a liveness round.
    pub fn ping(&self) {
        lock(&self.state).ping = true;
        self.notify.notify_one();
    }

    /// Waits for the next thing to do: a kick first, then frames, then a liveness round.
    pub async fn next(&self) -> Out {
        loop {
            {
                let mut st = lock(&self.state);
                if let Some((code, r)) = st.kick {
                    return Out::Kick(code, r);
                }
                if !st.queue.is_empty() || st.presence.is_some() {
                    return Out::Frames;
                }
                if std::mem::take(&mut st.ping) {
                    return Out::Ping;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Appends every waiting frame to `out`, messages in order, then presence: a busy
    /// connection writes them all with one system call.
    pub fn take(&self, out: &mut Vec<u8>) {
        let mut st = lock(&self.state);
        for m in st.queue.drain(..) {
            out.extend_from_slice(&m);
        }
        // Give back the memory of a burst; an idle connection holds none.
        st.queue = VecDeque::new();
        if let Some(p) = st.presence.take() {
            out.extend_from_slice(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kicks_first_then_frames_in_order_then_presence() {
        let o = Outbox::new(2);
        o.push(Bytes::from_static(b"a")).unwrap();
        o.push(Bytes::from_static(b"b")).unwrap();
        assert_eq!(o.push(Bytes::from_static(b"c")), Err(Full::Queue), "bounded");
        o.set_presence(Bytes::from_static(b"old"));
        o.set_presence(Bytes::from_static(b"P"));
        assert!(matches!(o.next().await, Out::Frames));
        let mut out = Vec::new();
        o.take(&mut out);
        assert_eq!(out, b"abP", "messages in order, newest presence only");
        o.ping();
        assert!(matches!(o.next().await, Out::Ping));
        o.push(Bytes::from_static(b"x")).unwrap();
        o.kick("bye");
        assert!(matches!(o.next().await, Out::Kick(1008, "bye")), "a kick goes before waiting frames");
        assert_eq!(o.push(Bytes::from_static(b"y")), Err(Full::Closing), "nothing queued after a kick");
    }
}
