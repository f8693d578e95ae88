//! TLS for the client: `wss://` to a rendezvous behind a TLS proxy (Caddy on a VPS offers
//! only TLS). Trusted roots are Mozilla's, built in (a minimal container image has no system
//! store to read), plus an optional private CA (`hearth daemon --rendezvous-ca FILE`), e.g.
//! Caddy's `tls internal` root on a private network.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why a TLS client configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The CA file could not be read or holds something that is not PEM.
    #[error("cannot read CA certificates from {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The CA file holds no certificate.
    #[error("{path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in the CA file is not a usable trust anchor.
    #[error("{path}: a certificate is not usable as a root: {reason}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TLS library refused the configuration.
    #[error("TLS set-up: {0}")]
    Setup(String),
}

/// Mozilla's roots (webpki-roots).
fn public_roots() -> RootCertStore {
    RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

/// A client configuration trusting the public roots plus every certificate in `extra_ca`
/// (PEM; several allowed). Only TLS 1.2 and 1.3 with the aws-lc-rs provider's safe suites.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = public_roots();
    if let Some(path) = extra_ca {
        let err = |reason: String| TlsError::Read { path: path.to_owned(), reason };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&bytes).collect::<Result<_, _>>().map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate { path: path.to_owned() });
        }
        for c in certs {
            roots.add(c).map_err(|e| TlsError::BadCertificate { path: path.to_owned(), reason: e.to_string() })?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The configuration with the public roots only, made once.
pub fn default_config() -> Result<Arc<ClientConfig>, TlsError> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(c) = DEFAULT.get() {
        return Ok(c.clone());
    }
    let c = client_config(None)?;
    Ok(DEFAULT.get_or_init(|| c).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_roots_are_built_in() {
        assert!(default_config().is_ok());
        assert!(public_roots().len() > 50);
    }

    #[test]
    fn a_bad_ca_file_gets_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("hearth-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        assert!(matches!(client_config(Some(&missing)), Err(TlsError::Read { .. })));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        assert!(matches!(client_config(Some(&empty)), Err(TlsError::NoCertificate { .. })));
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        let e = client_config(Some(&garbage)).unwrap_err();
        assert!(matches!(e, TlsError::BadCertificate { .. } | TlsError::Read { .. }), "{e}");
        let truncated = dir.join("truncated.pem");
        std::fs::write(&truncated, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
        assert!(client_config(Some(&truncated)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
