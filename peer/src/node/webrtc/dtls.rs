//! str0m's own DTLS (dimpl over aws-lc-rs, configured as `str0m-aws-lc-rs` does) with one
//! change: the first handshake flight is retransmitted after 100 ms instead of 1 s.
//!
//! Why: the DTLS client writes its ClientHello as soon as its side of ICE has a candidate
//! pair in view, about a millisecond before ICE reports a connected pair, so str0m drops
//! that first flight; with dimpl's default the handshake then waits a whole second for the
//! retransmission (seen in dimpl's trace logs; every daemon-to-daemon set-up, on loopback
//! as across NATs, took 0.9–1.1 s where the handshake itself takes 1 ms). Later flights
//! still double their timeout from there, so a slow path costs at most a few extra copies
//! of the first flight.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use str0m::config::CryptoProvider;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::CryptoError;

/// The first flight's retransmission timeout.
pub(super) const FIRST_FLIGHT_RTO: Duration = Duration::from_millis(100);
/// Retransmissions of a flight before the handshake gives up.
const FLIGHT_RETRIES: usize = 8;

#[derive(Debug)]
struct Provider;

impl DtlsProvider for Provider {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags().dtls_provider.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        // As str0m-aws-lc-rs: ICE has checked return routability, so no server cookie.
        let mut builder = dimpl::Config::builder()
            .use_server_cookie(false)
            .flight_start_rto(FIRST_FLIGHT_RTO)
            .flight_retries(FLIGHT_RETRIES);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(builder.build().map_err(|e| CryptoError::Other(format!("DTLS config: {e}")))?);
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert.clone(), now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert.clone(), now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert.clone(), now),
            other => return Err(CryptoError::Other(format!("unsupported DTLS version: {other}"))),
        };
        Ok(Box::new(Instance { dtls }))
    }
}

struct Instance {
    dtls: dimpl::Dtls,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

impl DtlsInstance for Instance {
    fn set_active(&mut self, active: bool) {
        self.dtls.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.dtls.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.dtls.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.dtls.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.dtls.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.dtls.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.dtls.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.dtls.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.dtls.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.dtls.close()
    }
}

/// str0m's aws-lc-rs crypto with [`Provider`] for DTLS, made once.
pub(super) fn provider() -> Arc<CryptoProvider> {
    static DTLS: Provider = Provider;
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = str0m::crypto::from_feature_flags();
        p.dtls_provider = &DTLS;
        Arc::new(p)
    })
    .clone()
}
