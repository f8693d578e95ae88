//! LAN discovery: advertise `_hearth._tcp.local.` and browse for devices of the same vault.
//!
//! The advertisement carries a random instance and host name, the port, and TXT `v=2`,
//! `t=<rotating LAN tag>` — nothing that names the vault, a device or a person. When the
//! tag's ten-minute epoch turns, the service is withdrawn and announced again under new random
//! names, so an observer cannot link one epoch's advertisement to the next. A service whose
//! tag is not this vault's tag *of that instance and port* (current or previous epoch) is
//! ignored without any connection attempt.
//!
//! A device that rotated its vault away from others also advertises, with the same port,
//! under each retired vault's tag (never browsing for them): a device left on the old vault
//! finds it and is told of the rotation (the sync session answers old-vault handshakes).
//!
//! The browse thread never blocks: discoveries go to the node with `try_send` (one dropped
//! when the node is busy comes again with the service's next announcement), and a browse
//! subscription that mdns-sd dropped (it drops one that falls far behind) is renewed.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;

use super::lan_tag;
use super::Input;
use crate::identity::SymmetricKey;

/// The DNS-SD service type.
pub const SERVICE: &str = "_hearth._tcp.local.";

/// A running advertisement and browser; stops when dropped.
pub(crate) struct Mdns {
    daemon: ServiceDaemon,
    stop: tokio::sync::watch::Sender<bool>,
    /// Services resolved and ignored (another vault's, or not a valid tag).
    pub(crate) ignored: Arc<AtomicU64>,
}

impl Drop for Mdns {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = self.daemon.shutdown();
    }
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The instance label of a service's full name (`h….` + [`SERVICE`]).
fn instance_of(fullname: &str) -> Option<&str> {
    fullname.strip_suffix(SERVICE)?.strip_suffix('.')
}

/// What a discovered service offers, if it belongs to this vault.
pub(crate) fn accept_service(
    key: &SymmetricKey,
    epoch: u64,
    fullname: &str,
    version: Option<&str>,
    tag: Option<&str>,
    addrs: impl IntoIterator<Item = IpAddr>,
    port: u16,
) -> Option<Vec<String>> {
    let instance = instance_of(fullname)?;
    if version != Some(lan_tag::VERSION) || port == 0 || !lan_tag::accepts(key, epoch, instance, port, tag?) {
        return None;
    }
    let mut out: Vec<String> = addrs
        .into_iter()
        // A link-local IPv6 address needs its interface scope, which a URL cannot carry.
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
        .map(|ip| SocketAddr::new(ip, port).to_string())
        .collect();
    out.sort();
    (!out.is_empty()).then_some(out)
}

/// A fresh random instance name (also the host name's label).
fn random_instance() -> String {
    format!("h{}", crate::fsutil::random_hex())
}

fn service_info(key: &SymmetricKey, epoch: u64, instance: &str, port: u16) -> Result<ServiceInfo, mdns_sd::Error> {
    let host = format!("{instance}.local.");
    let tag = lan_tag::tag(key, epoch, instance, port);
    let props = [("v", lan_tag::VERSION), ("t", tag.as_str())];
    Ok(ServiceInfo::new(SERVICE, instance, &host, "", port, &props[..])?.enable_addr_auto())
}

/// This device's advertisement: new random names and a new tag at each epoch.
struct Advert {
    key: SymmetricKey,
    port: u16,
    epoch: u64,
    instance: String,
}

impl Advert {
    fn new(key: SymmetricKey, port: u16, epoch: u64) -> Self {
        Self { key, port, epoch, instance: random_instance() }
    }

    /// The service to register now.
    fn info(&self) -> Result<ServiceInfo, mdns_sd::Error> {
        service_info(&self.key, self.epoch, &self.instance, self.port)
    }

    /// At `epoch`: when it turned, takes new names and returns the full name to withdraw.
    fn turn(&mut self, epoch: u64) -> Option<String> {
        if epoch == self.epoch {
            return None;
        }
        let old = format!("{}.{SERVICE}", self.instance);
        self.epoch = epoch;
        self.instance = random_instance();
        Some(old)
    }
}

/// Starts advertising `port` and browsing (under `key`; under each of `retired` too, for
/// advertising only); discoveries go to the node.
pub(crate) fn start(
    key: &SymmetricKey,
    retired: &[SymmetricKey],
    port: u16,
    interfaces: &[String],
    to_node: mpsc::Sender<Input>,
) -> Result<Mdns, mdns_sd::Error> {
    let daemon = ServiceDaemon::new()?;
    if !interfaces.is_empty() {
        daemon.disable_interface(IfKind::All)?;
        for i in interfaces {
            daemon.enable_interface(IfKind::Name(i.clone()))?;
        }
    }
    let epoch = lan_tag::epoch_of(unix_secs());
    let mut adverts: Vec<Advert> =
        std::iter::once(key).chain(retired).map(|k| Advert::new(SymmetricKey(*k.as_bytes()), port, epoch)).collect();
    // Our own names (the current ones, and the ones before a rotation): never dialled.
    let own_names = Arc::new(Mutex::new(Vec::new()));
    for advert in &adverts {
        let info = advert.info()?;
        own_names.lock().unwrap_or_else(PoisonError::into_inner).push(info.get_fullname().to_owned());
        daemon.register(info)?;
        tracing::info!(instance = %advert.instance, "advertising on mDNS");
    }
    let (stop, mut stopped) = tokio::sync::watch::channel(false);

    let browse_key = SymmetricKey(*key.as_bytes());
    let browse_daemon = daemon.clone();
    let names = own_names.clone();
    let ignored = Arc::new(AtomicU64::new(0));
    let counter = ignored.clone();
    std::thread::Builder::new()
        .name("hearth-mdns".into())
        .spawn(move || {
            let to = Forwarder { key: &browse_key, own: &names, node: &to_node, dropped: 0, ignored: &counter };
            browse(&browse_daemon, to);
        })
        .map_err(|e| mdns_sd::Error::Msg(format!("cannot start the mDNS thread: {e}")))?;

    // New names and a new tag whenever the epoch turns.
    let rotate = daemon.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            let epoch = lan_tag::epoch_of(unix_secs());
            let mut names = Vec::new();
            for advert in &mut adverts {
                let Some(old) = advert.turn(epoch) else { continue };
                let info = match advert.info() {
                    Ok(info) => info,
                    Err(e) => {
                        tracing::warn!("mDNS re-announce failed: {e}");
                        continue;
                    }
                };
                names.extend([old.clone(), info.get_fullname().to_owned()]);
                if let Err(e) = rotate.unregister(&old) {
                    tracing::warn!("mDNS withdraw failed: {e}");
                }
                if let Err(e) = rotate.register(info) {
                    tracing::warn!("mDNS re-announce failed: {e}");
                }
            }
            if !names.is_empty() {
                *own_names.lock().unwrap_or_else(PoisonError::into_inner) = names;
            }
        }
    });
    Ok(Mdns { daemon, stop, ignored })
}

/// The browse loop of the mDNS thread: ends when the daemon shuts down or the node is gone.
fn browse(daemon: &ServiceDaemon, mut to: Forwarder<'_>) {
    loop {
        // After a shutdown, browse fails: the thread ends.
        let Ok(events) = daemon.browse(SERVICE) else { return };
        while let Ok(ev) = events.recv() {
            if !to.event(ev) {
                return;
            }
        }
        // The subscription ended while the daemon runs (it fell behind): browse again.
        tracing::warn!("mDNS browse subscription ended; renewing it");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Turns browse events into node inputs, never blocking the mDNS thread.
struct Forwarder<'a> {
    key: &'a SymmetricKey,
    own: &'a Mutex<Vec<String>>,
    node: &'a mpsc::Sender<Input>,
    /// Events dropped because the node's input channel was full.
    dropped: u64,
    /// Services of other vaults (or not Hearth's) resolved and ignored, for status.
    ignored: &'a AtomicU64,
}

impl Forwarder<'_> {
    /// Handles one event; false once the node is gone.
    fn event(&mut self, ev: ServiceEvent) -> bool {
        let input = match ev {
            ServiceEvent::ServiceResolved(s) => {
                if self.own.lock().unwrap_or_else(PoisonError::into_inner).contains(&s.fullname) {
                    return true;
                }
                let epoch = lan_tag::epoch_of(unix_secs());
                let addrs = s.addresses.iter().map(|a| a.to_ip_addr());
                let (v, t) = (s.get_property_val_str("v"), s.get_property_val_str("t"));
                match accept_service(self.key, epoch, &s.fullname, v, t, addrs, s.port) {
                    Some(addrs) => Input::Discovered { name: s.fullname.clone(), addrs },
                    None => {
                        tracing::debug!("ignoring a service of another vault");
                        self.ignored.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                }
            }
            ServiceEvent::ServiceRemoved(_, name) => Input::Lost { name },
            _ => return true,
        };
        match self.node.try_send(input) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    tracing::warn!(dropped = self.dropped, "the node is busy: mDNS events dropped (they come again)");
                }
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{VaultKeys, VaultSecret};

    fn key(b: u8) -> SymmetricKey {
        VaultKeys::derive(&VaultSecret::from_bytes([b; 32])).lan_tag
    }

    const N: &str = "habc._hearth._tcp.local.";

    #[test]
    fn only_this_vaults_current_tags_are_accepted() {
        let k = key(1);
        let ip: IpAddr = "10.9.0.2".parse().unwrap();
        let good = lan_tag::tag(&k, 7, "habc", 7475);
        let v = Some(lan_tag::VERSION);
        assert_eq!(accept_service(&k, 7, N, v, Some(&good), [ip], 7475), Some(vec!["10.9.0.2:7475".into()]));
        assert_eq!(accept_service(&k, 8, N, v, Some(&good), [ip], 7475).map(|v| v.len()), Some(1));
        assert_eq!(accept_service(&k, 9, N, v, Some(&good), [ip], 7475), None, "two epochs old");
        assert_eq!(accept_service(&key(2), 7, N, v, Some(&good), [ip], 7475), None, "another vault");
        assert_eq!(accept_service(&k, 7, N, Some("1"), Some(&good), [ip], 7475), None, "unknown version");
        assert_eq!(accept_service(&k, 7, N, v, None, [ip], 7475), None);
        assert_eq!(accept_service(&k, 7, N, v, Some(&good), [ip], 0), None);
        assert_eq!(accept_service(&k, 7, "hfake._hearth._tcp.local.", v, Some(&good), [ip], 7475), None, "replayed");
        assert_eq!(accept_service(&k, 7, N, v, Some(&good), [ip], 7476), None, "replayed on another port");
        assert_eq!(accept_service(&k, 7, "habc._other._tcp.local.", v, Some(&good), [ip], 7475), None);
    }

    #[test]
    fn link_local_ipv6_is_skipped_and_v6_is_bracketed() {
        let k = key(1);
        let t = lan_tag::tag(&k, 1, "habc", 9);
        let v = Some(lan_tag::VERSION);
        let ips: Vec<IpAddr> = vec!["fe80::1".parse().unwrap(), "fd00::5".parse().unwrap()];
        assert_eq!(accept_service(&k, 1, N, v, Some(&t), ips, 9), Some(vec!["[fd00::5]:9".into()]));
        let only_ll: Vec<IpAddr> = vec!["fe80::1".parse().unwrap()];
        assert_eq!(accept_service(&k, 1, N, v, Some(&t), only_ll, 9), None);
    }

    #[test]
    fn the_advertisement_names_nothing_but_version_and_tag() {
        let k = key(1);
        let info = service_info(&k, 5, "habcdef0123456789", 7475).unwrap();
        let props: Vec<(String, String)> =
            info.get_properties().iter().map(|p| (p.key().to_owned(), p.val_str().to_owned())).collect();
        let tag = lan_tag::tag(&k, 5, "habcdef0123456789", 7475);
        assert_eq!(props, vec![("v".into(), "2".into()), ("t".into(), tag)]);
        assert_eq!(info.get_fullname(), "habcdef0123456789._hearth._tcp.local.");
        assert_eq!(instance_of(info.get_fullname()), Some("habcdef0123456789"));
        assert_ne!(random_instance(), random_instance());
        assert_eq!(random_instance().len(), 17);
    }

    #[test]
    fn each_epoch_is_advertised_under_new_names_and_a_tag_of_its_own() {
        let k = key(1);
        let mut a = Advert::new(key(1), 7475, 10);
        let first = a.info().unwrap();
        assert_eq!(a.turn(10), None, "same epoch: nothing changes");
        let old = a.turn(11).expect("the epoch turned");
        assert_eq!(old, first.get_fullname());
        let second = a.info().unwrap();
        assert_ne!(second.get_fullname(), first.get_fullname(), "new instance name");
        assert_ne!(second.get_hostname(), first.get_hostname(), "new host name");
        let (v, t) = (second.get_property_val_str("v"), second.get_property_val_str("t"));
        let ip: IpAddr = "10.9.0.2".parse().unwrap();
        assert!(accept_service(&k, 11, second.get_fullname(), v, t, [ip], 7475).is_some());
        let old_tag = first.get_property_val_str("t");
        assert!(accept_service(&k, 11, second.get_fullname(), v, old_tag, [ip], 7475).is_none());
    }

    /// The mDNS thread never blocks on a busy node: with the input channel full, an event
    /// is dropped (and counted) at once instead of waiting (it used to `blocking_send`, and
    /// mdns-sd then dropped the subscription that fell behind: discovery dead until restart).
    #[test]
    fn a_busy_node_never_blocks_the_mdns_thread() {
        let (node, mut inputs) = mpsc::channel(1);
        node.try_send(Input::Lost { name: "filler".into() }).unwrap();
        let (k, own, ignored) = (key(1), Mutex::new(vec![]), AtomicU64::new(0));
        let mut to = Forwarder { key: &k, own: &own, node: &node, dropped: 0, ignored: &ignored };
        for i in 0..3 {
            assert!(to.event(ServiceEvent::ServiceRemoved(SERVICE.into(), format!("h{i}.{SERVICE}"))));
        }
        assert_eq!(to.dropped, 3);
        let _ = inputs.try_recv();
        assert!(to.event(ServiceEvent::ServiceRemoved(SERVICE.into(), format!("h9.{SERVICE}"))));
        assert!(matches!(inputs.try_recv(), Ok(Input::Lost { .. })), "room again: delivered");
        drop(inputs);
        assert!(!to.event(ServiceEvent::ServiceRemoved(SERVICE.into(), "x".into())), "node gone: the thread ends");
    }
}
