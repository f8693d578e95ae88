//! One WebRTC connection carrying one ordered, reliable data channel: str0m's `Rtc` behind a
//! small sans-IO surface (datagrams and time in; datagrams, the channel's messages and
//! open/close out), so it runs under tokio in the node and in plain loops in tests.
//!
//! str0m's contract: after every change (input, write, candidate) drain `poll_output` until
//! it returns a timeout. Its send buffer is smaller than what a sync session keeps in flight,
//! so messages the channel cannot take yet wait here and go on `ChannelBufferedAmountLow`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::config::DtlsCert;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

/// The data channel's label (both ends use one channel; the label only helps debugging).
const LABEL: &str = "hearth-sync";
/// Ask for more once the channel's buffer has drained below this.
const LOW_WATER: usize = 64 * 1024;
/// str0m may ask to be woken a year from now; look at least this often.
const MAX_WAIT: Duration = Duration::from_millis(500);
/// A connectivity check unanswered this long is sent again (str0m: 250 ms, doubling).
///
/// Why shorter: a device's first check towards its peer's public address is usually lost,
/// its own NAT open but the peer's not yet; the peer's check answered on the way back does
/// not make it check again (str0m runs no triggered check on a pair in progress), so the
/// pair waited for this timer. Browsers check unconnected pairs about every 50 ms too;
/// ICE's pacing (one check per 50 ms) still bounds the rate, and the timer still doubles.
const FIRST_CHECK_RTO: Duration = Duration::from_millis(50);
/// A live peer is heard at least this often, data or not (its consent checks and its
/// answers to ours; measured in `conn::tests`).
pub const HEARD_EVERY: Duration = Duration::from_secs(5);
/// Early DTLS datagrams held until ICE accepts their source (a first flight and a resend).
const EARLY_DTLS: usize = 4;

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The peer's SDP did not parse.
    #[error("malformed SDP: {0}")]
    Sdp(String),
    /// str0m refused the offer or answer.
    #[error("WebRTC negotiation failed: {0}")]
    Negotiation(String),
}

/// What the connection asks of its owner.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnEvent {
    /// Send `contents` from local address `source` to `destination`.
    Transmit {
        /// The local socket address to send from.
        source: SocketAddr,
        /// Where to.
        destination: SocketAddr,
        /// The datagram.
        contents: Vec<u8>,
    },
    /// The data channel opened: messages flow from now on.
    Open,
    /// A message arrived on the channel.
    Message(Vec<u8>),
    /// The connection is over (closed by either side, or its consent checks failed).
    Closed,
}

/// One data-channel connection.
pub struct Conn {
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    channel: Option<ChannelId>,
    /// Messages written before the channel opened or while its buffer was full.
    queue: VecDeque<Vec<u8>>,
    events: VecDeque<ConnEvent>,
    deadline: Instant,
    closed: bool,
    /// Where the last datagram that was not a STUN check came from (for status).
    remote: Option<SocketAddr>,
    /// When the peer was last heard from (any datagram of this connection).
    heard: Option<Instant>,
    /// An unanswered probe: when it was asked for.
    probe: Option<Instant>,
    /// DTLS datagrams that arrived before ICE let them in: (source, destination, bytes).
    early: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("open", &self.channel.is_some()).field("closed", &self.closed).finish()
    }
}

fn config(cert: &DtlsCert) -> RtcConfig {
    let mut config = Rtc::builder().set_crypto_provider(super::dtls::provider()).set_dtls_cert(cert.clone());
    config.set_initial_stun_rto(FIRST_CHECK_RTO);
    config
}

/// A new DTLS certificate (tens of milliseconds: make it before it is needed).
pub fn certificate() -> Option<DtlsCert> {
    str0m::crypto::from_feature_flags().dtls_provider.generate_certificate()
}

impl Conn {
    fn new(rtc: Rtc, now: Instant) -> Self {
        Self {
            rtc,
            pending: None,
            channel: None,
            queue: VecDeque::new(),
            events: VecDeque::new(),
            deadline: now,
            closed: false,
            remote: None,
            heard: None,
            probe: None,
            early: VecDeque::new(),
        }
    }

    /// The offering side: returns the connection and the offer's SDP.
    pub fn offer(now: Instant, cert: &DtlsCert, candidates: Vec<Candidate>) -> Result<(Self, String), ConnError> {
        let mut rtc = config(cert).build(now);
        for c in candidates {
            rtc.add_local_candidate(c);
        }
        let mut api = rtc.sdp_api();
        api.add_channel_with_config(ChannelConfig { label: LABEL.into(), ordered: true, ..ChannelConfig::default() });
        let (offer, pending) = api.apply().ok_or_else(|| ConnError::Negotiation("no offer to make".into()))?;
        let mut conn = Self::new(rtc, now);
        conn.pending = Some(pending);
        conn.drain(now);
        Ok((conn, offer.to_sdp_string()))
    }

    /// The answering side: returns the connection and the answer's SDP.
    pub fn answer(
        now: Instant,
        cert: &DtlsCert,
        candidates: Vec<Candidate>,
        offer: &str,
    ) -> Result<(Self, String), ConnError> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| ConnError::Sdp(e.to_string()))?;
        let mut rtc = config(cert).build(now);
        for c in candidates {
            rtc.add_local_candidate(c);
        }
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| ConnError::Negotiation(e.to_string()))?;
        let mut conn = Self::new(rtc, now);
        // Start ICE now: until its first timeout str0m reports nothing to wait for, and an
        // owner woken only at `deadline` would sit out `MAX_WAIT` before the first check.
        conn.timeout(now);
        Ok((conn, answer.to_sdp_string()))
    }

    /// The offering side takes the answer.
    pub fn accept_answer(&mut self, now: Instant, answer: &str) -> Result<(), ConnError> {
        let answer = SdpAnswer::from_sdp_string(answer).map_err(|e| ConnError::Sdp(e.to_string()))?;
        let pending = self.pending.take().ok_or_else(|| ConnError::Negotiation("no offer is pending".into()))?;
        self.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| ConnError::Negotiation(e.to_string()))?;
        // Checks start now, and the peer's that arrived before its answer are answered now.
        self.timeout(now);
        Ok(())
    }

    /// A candidate of this side found after its SDP went out (trickle ICE): its pairs join
    /// the checks.
    pub fn add_local_candidate(&mut self, now: Instant, c: Candidate) {
        self.rtc.add_local_candidate(c);
        self.drain(now);
    }

    /// A candidate the peer trickled.
    pub fn add_remote_candidate(&mut self, now: Instant, c: Candidate) {
        self.rtc.add_remote_candidate(c);
        self.drain(now);
    }

    /// True while the offer waits for its answer.
    pub fn awaits_answer(&self) -> bool {
        self.pending.is_some()
    }

    /// A datagram arrived on local address `destination`; false if it is not this
    /// connection's (the caller may then try it elsewhere, e.g. as a STUN response).
    pub fn receive(&mut self, now: Instant, source: SocketAddr, destination: SocketAddr, bytes: &[u8]) -> bool {
        let Ok(contents) = bytes.try_into() else { return false };
        let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination, contents });
        let dtls = bytes.first().is_some_and(|b| (20..=63).contains(b));
        if !self.rtc.accepts(&input) {
            if dtls && self.channel.is_none() && !self.closed {
                self.hold(source, destination, bytes);
                return true;
            }
            tracing::trace!(%source, %destination, len = bytes.len(), "datagram not for this connection");
            return false;
        }
        if dtls {
            self.remote = Some(source);
        }
        self.heard = Some(now);
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!("WebRTC input: {e}");
        }
        self.drain(now);
        self.release(now);
        true
    }

    /// Keeps a DTLS datagram that came before ICE accepts its source.
    ///
    /// Why: the offering side (DTLS client) sends its first flight once *its* check of a pair
    /// succeeds, which can be before the answering side's own check of that pair succeeds
    /// (its first check lost in a NAT that had not opened yet, say); str0m then drops the
    /// flight and the handshake waits for the client's retransmission timer. Held here and
    /// fed in the moment ICE accepts the source, the handshake goes on at once (browsers keep
    /// an early ClientHello for the same reason). Only a few, only before the channel opens,
    /// and each still passes `accepts` before str0m sees it.
    fn hold(&mut self, source: SocketAddr, destination: SocketAddr, bytes: &[u8]) {
        if self.early.len() == EARLY_DTLS {
            self.early.pop_front();
        }
        self.early.push_back((source, destination, bytes.to_vec()));
    }

    /// Feeds held DTLS datagrams that ICE now accepts.
    fn release(&mut self, now: Instant) {
        if self.early.is_empty() {
            return;
        }
        if self.channel.is_some() || self.closed {
            self.early.clear();
            return;
        }
        let mut fed = false;
        for (source, destination, bytes) in std::mem::take(&mut self.early) {
            let Ok(contents) = bytes.as_slice().try_into() else { continue };
            let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination, contents });
            if self.rtc.accepts(&input) {
                self.remote = Some(source);
                if let Err(e) = self.rtc.handle_input(input) {
                    tracing::debug!("WebRTC input: {e}");
                }
                fed = true;
            } else {
                self.early.push_back((source, destination, bytes));
            }
        }
        if fed {
            self.drain(now);
        }
    }

    /// Time passed: call when [`Conn::deadline`] is reached.
    pub fn timeout(&mut self, now: Instant) {
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!("WebRTC timeout: {e}");
        }
        self.drain(now);
        self.release(now);
        self.check_probe(now);
    }

    /// Queues one message for the channel.
    pub fn send(&mut self, now: Instant, data: Vec<u8>) {
        self.queue.push_back(data);
        self.flush();
        self.drain(now);
    }

    /// Closes the connection (the peer sees the channel close).
    pub fn close(&mut self, now: Instant) {
        // A goodbye the peer sees at once (SCTP shutdown, DTLS close_notify: queued here as
        // transmits before `Closed`); without one, the peer holds a dead session until ICE
        // consent expires (about 30 s), and this device, back sooner, waits that long.
        if self.rtc.close().is_err() {
            self.rtc.disconnect();
        }
        self.drain(now);
        self.finish();
    }

    /// The next thing to do.
    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        self.events.pop_front()
    }

    /// When to call [`Conn::timeout`] next.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once the connection is over.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True once the channel is open.
    pub fn is_open(&self) -> bool {
        self.channel.is_some()
    }

    /// Bytes waiting for room in the channel.
    pub fn queued(&self) -> usize {
        self.queue.iter().map(Vec::len).sum()
    }

    /// The peer's address, once it sent data.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// When the peer was last heard from. A live peer is heard at least every
    /// [`HEARD_EVERY`]: ICE checks the nominated pair's consent both ways every few seconds.
    pub fn heard(&self) -> Option<Instant> {
        self.heard
    }

    /// Asks the peer to prove itself: unless it is heard from within [`HEARD_EVERY`] from
    /// `now`, the connection ends (ICE consent alone would take about 20 s).
    pub fn probe(&mut self, now: Instant) {
        if self.closed || self.probe.is_some() {
            return;
        }
        self.probe = Some(now);
        self.deadline = self.deadline.min(now + HEARD_EVERY);
    }

    /// Ends a probed connection whose peer stayed silent; clears a probe it answered.
    fn check_probe(&mut self, now: Instant) {
        let Some(at) = self.probe else { return };
        if self.heard.is_some_and(|h| h > at) {
            self.probe = None;
        } else if now >= at + HEARD_EVERY {
            tracing::info!(remote = ?self.remote, "WebRTC peer silent since a probe: closing");
            self.probe = None;
            self.close(now);
        } else {
            self.deadline = self.deadline.min(at + HEARD_EVERY);
        }
    }

    fn finish(&mut self) {
        if !std::mem::replace(&mut self.closed, true) {
            self.queue.clear();
            self.events.push_back(ConnEvent::Closed);
        }
    }

    /// Writes queued messages while the channel takes them.
    fn flush(&mut self) {
        let Some(id) = self.channel else { return };
        let Some(mut ch) = self.rtc.channel(id) else { return };
        while let Some(m) = self.queue.front() {
            match ch.write(true, m) {
                Ok(true) => {
                    self.queue.pop_front();
                }
                Ok(false) => break,
                Err(e) => {
                    tracing::debug!("WebRTC write: {e}");
                    break;
                }
            }
        }
    }

    fn drain(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.deadline = t.min(now + MAX_WAIT);
                    return;
                }
                Ok(Output::Transmit(t)) => self.events.push_back(ConnEvent::Transmit {
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents.to_vec(),
                }),
                Ok(Output::Event(e)) => self.event(e),
                Err(e) => {
                    tracing::debug!("WebRTC: {e}");
                    self.finish();
                    return;
                }
            }
            if !self.rtc.is_alive() {
                self.finish();
                return;
            }
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::ChannelOpen(id, _) if self.channel.is_none() => {
                self.channel = Some(id);
                if let Some(mut ch) = self.rtc.channel(id) {
                    ch.set_buffered_amount_low_threshold(LOW_WATER);
                }
                self.events.push_back(ConnEvent::Open);
                self.flush();
            }
            Event::ChannelData(d) if Some(d.id) == self.channel => self.events.push_back(ConnEvent::Message(d.data)),
            Event::ChannelBufferedAmountLow(id) if Some(id) == self.channel => self.flush(),
            Event::ChannelClose(id) if Some(id) == self.channel => self.finish(),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => self.finish(),
            // The peer closed (its DTLS close_notify or SCTP shutdown arrived).
            Event::Closed => self.finish(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
