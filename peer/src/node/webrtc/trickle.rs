//! Trickle ICE between Hearth devices: the offer and the answer leave with host candidates
//! only, and the server-reflexive and relayed ones follow in `Candidates` signals as STUN
//! and TURN answer, so neither side waits for a round trip to those servers before
//! signalling.
//!
//! Builds before trickle refuse a `Candidates` signal, so each SDP says whether its sender
//! reads them: [`MARK`], a session attribute other parsers ignore. An offer without it is
//! answered only once gathering is over, every candidate inside; an answer without it tells
//! the offering side that its own trickled candidates were lost, and the hub dials that
//! device with complete offers from then on.

use str0m::Candidate;

use crate::signal::{MAX_BATCH, MAX_CANDIDATE};

/// The session attribute that says "this device reads trickled candidates".
pub(crate) const MARK: &str = "a=x-hearth-trickle";

/// What the hub passes on to a connection task from its peer.
#[derive(Debug)]
pub enum Remote {
    /// The offer was sealed in this session (the offering side learns it here).
    Session([u8; 16]),
    /// The peer's answer.
    Answer(String),
    /// Candidates the peer trickled.
    Candidates(Vec<String>),
}

/// `sdp` with [`MARK`] among its session attributes (before the first media section).
pub(crate) fn mark(sdp: &str) -> String {
    let at = sdp.find("\r\nm=").map_or(sdp.len(), |i| i + 2);
    let mut out = String::with_capacity(sdp.len() + MARK.len() + 2);
    out.push_str(&sdp[..at]);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str("\r\n");
    }
    out.push_str(MARK);
    out.push_str("\r\n");
    out.push_str(&sdp[at..]);
    out
}

/// True when the SDP's sender reads trickled candidates.
pub(crate) fn reads(sdp: &str) -> bool {
    sdp.lines().any(|l| l.trim_end() == MARK)
}

/// Candidates a peer may trickle in one session (a device has a few addresses; a flood of
/// them would only make ICE check pairs that lead nowhere).
pub(crate) const MAX_TRICKLED: usize = 64;

/// The usable candidates of a trickled batch, when the peer trickled `before` already in
/// this session: UDP ones that parse, up to [`MAX_TRICKLED`] in all; the rest are skipped
/// (a newer build may trickle kinds this one does not know).
pub(crate) fn parse(lines: &[String], before: usize) -> Vec<Candidate> {
    let parsed = lines.iter().take(MAX_BATCH).filter(|l| l.len() <= MAX_CANDIDATE).filter_map(|l| {
        let l = l.trim();
        Candidate::from_sdp_string(l.strip_prefix("a=").unwrap_or(l)).ok()
    });
    let udp = parsed.filter(|c| c.proto() == str0m::net::Protocol::Udp);
    udp.take(MAX_TRICKLED.saturating_sub(before)).collect()
}

/// Candidates as the lines of `Candidates` signals, at most [`MAX_BATCH`] each.
pub(crate) fn batches(found: &[Candidate]) -> Vec<Vec<String>> {
    let lines: Vec<String> = found.iter().map(Candidate::to_sdp_string).filter(|l| l.len() <= MAX_CANDIDATE).collect();
    lines.chunks(MAX_BATCH).map(<[String]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-options:trickle\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n";

    #[test]
    fn the_mark_is_a_session_attribute_and_is_read_back() {
        let marked = mark(SDP);
        assert!(reads(&marked) && !reads(SDP));
        let (session, media) = marked.split_at(marked.find("m=").unwrap());
        assert!(session.ends_with("a=ice-options:trickle\r\na=x-hearth-trickle\r\n"), "{marked}");
        assert!(media.starts_with("m=application") && !media.contains(MARK));
        assert_eq!(marked.replace("a=x-hearth-trickle\r\n", ""), SDP, "nothing else changes");
        assert!(reads(&mark("v=0")), "an SDP without media still gets it");
        assert!(!reads("a=x-hearth-trickled\r\n"));
    }

    #[test]
    fn a_marked_sdp_still_parses_as_an_offer() {
        let cert = super::super::conn::certificate().unwrap();
        let host = Candidate::host("10.0.0.2:5000".parse().unwrap(), "udp").unwrap();
        let (_, offer) = super::super::conn::Conn::offer(std::time::Instant::now(), &cert, vec![host]).unwrap();
        let answered = super::super::conn::Conn::answer(std::time::Instant::now(), &cert, Vec::new(), &mark(&offer));
        assert!(answered.is_ok(), "{:?}", answered.err());
    }

    #[test]
    fn batches_round_trip_and_bad_lines_are_skipped() {
        let found = vec![
            Candidate::server_reflexive("203.0.113.7:6000".parse().unwrap(), "10.0.0.2:5000".parse().unwrap(), "udp")
                .unwrap(),
            Candidate::relayed("198.51.100.1:4000".parse().unwrap(), "10.0.0.2:5000".parse().unwrap(), "udp").unwrap(),
        ];
        let b = batches(&found);
        assert_eq!(b.len(), 1);
        let back = parse(&b[0], 0);
        assert_eq!(
            back.iter().map(Candidate::addr).collect::<Vec<_>>(),
            found.iter().map(Candidate::addr).collect::<Vec<_>>()
        );
        let mut junk = b[0].clone();
        junk.push("candidate:nonsense".into());
        junk.push("candidate:1 1 tcp 1 10.0.0.9 9 typ host tcptype passive".into());
        junk.push(format!("a={}", b[0][0]));
        junk.push(format!("{} {}", b[0][0], "x".repeat(MAX_CANDIDATE)));
        assert_eq!(parse(&junk, 0).len(), 3, "two good, the a= form of the first; no junk, TCP or overlong line");
        let many: Vec<Candidate> = (0..MAX_BATCH as u16 + 1)
            .map(|i| Candidate::host(std::net::SocketAddr::from(([10, 0, 0, 2], 5000 + i)), "udp").unwrap())
            .collect();
        let b = batches(&many);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![MAX_BATCH, 1]);
        assert_eq!(parse(&b[0], 0).len(), MAX_BATCH);
        // A session takes MAX_TRICKLED in all, whatever the batches.
        assert_eq!(parse(&b[0], MAX_TRICKLED - MAX_BATCH).len(), MAX_BATCH);
        assert_eq!(parse(&b[0], MAX_TRICKLED - 3).len(), 3);
        assert!(parse(&b[0], MAX_TRICKLED).is_empty() && parse(&b[0], MAX_TRICKLED + 1).is_empty());
    }
}
