//! LAN discovery: advertise `_hearth._tcp.local.` and browse for devices of the same vault.
//!
//! The advertisement carries a random instance and host name chosen at each start, the port,
//! and TXT `v=1`, `t=<rotating LAN tag>` — nothing that names the vault, a device or a person.
//! The tag is re-announced when its ten-minute epoch turns. A service whose tag is not this
//! vault's (current or previous epoch) is ignored without any connection attempt.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use rand::RngCore;
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

/// What a discovered service offers, if it belongs to this vault.
pub(crate) fn accept_service(
    key: &SymmetricKey,
    epoch: u64,
    version: Option<&str>,
    tag: Option<&str>,
    addrs: impl IntoIterator<Item = IpAddr>,
    port: u16,
) -> Option<Vec<String>> {
    if version != Some("1") || !lan_tag::accepts(key, epoch, tag?) || port == 0 {
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

fn service_info(instance: &str, port: u16, tag: &str) -> Result<ServiceInfo, mdns_sd::Error> {
    let host = format!("{instance}.local.");
    let props = [("v", "1"), ("t", tag)];
    Ok(ServiceInfo::new(SERVICE, instance, &host, "", port, &props[..])?.enable_addr_auto())
}

/// Starts advertising `port` and browsing; discoveries go to the node.
pub(crate) fn start(
    key: &SymmetricKey,
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
    let mut rnd = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut rnd);
    let instance = format!("h{}", hex::encode(rnd));
    let mut epoch = lan_tag::epoch_of(unix_secs());
    let info = service_info(&instance, port, &lan_tag::tag(key, epoch))?;
    let own = info.get_fullname().to_owned();
    daemon.register(info)?;
    let events = daemon.browse(SERVICE)?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);

    // Browse events arrive on a blocking channel: a small thread turns them into node inputs.
    let browse_key = SymmetricKey(*key.as_bytes());
    let own_name = own.clone();
    let node = to_node.clone();
    std::thread::Builder::new()
        .name("hearth-mdns".into())
        .spawn(move || {
            while let Ok(ev) = events.recv() {
                let input = match ev {
                    ServiceEvent::ServiceResolved(s) if s.fullname != own_name => {
                        let epoch = lan_tag::epoch_of(unix_secs());
                        let addrs = s.addresses.iter().map(|a| a.to_ip_addr());
                        match accept_service(
                            &browse_key,
                            epoch,
                            s.get_property_val_str("v"),
                            s.get_property_val_str("t"),
                            addrs,
                            s.port,
                        ) {
                            Some(addrs) => Input::Discovered { name: s.fullname.clone(), addrs },
                            None => {
                                tracing::debug!("ignoring a service of another vault");
                                continue;
                            }
                        }
                    }
                    ServiceEvent::ServiceRemoved(_, name) => Input::Lost { name },
                    _ => continue,
                };
                if node.blocking_send(input).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| mdns_sd::Error::Msg(format!("cannot start the mDNS thread: {e}")))?;

    // Re-announce with the new tag whenever the epoch turns.
    let rotate = daemon.clone();
    let rotate_key = SymmetricKey(*key.as_bytes());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            let now = lan_tag::epoch_of(unix_secs());
            if now != epoch {
                epoch = now;
                match service_info(&instance, port, &lan_tag::tag(&rotate_key, epoch)) {
                    Ok(info) => {
                        if let Err(e) = rotate.register(info) {
                            tracing::warn!("mDNS re-announce failed: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("mDNS re-announce failed: {e}"),
                }
            }
        }
    });
    tracing::info!(instance = %own, "advertising on mDNS");
    Ok(Mdns { daemon, stop })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{VaultKeys, VaultSecret};

    fn key(b: u8) -> SymmetricKey {
        VaultKeys::derive(&VaultSecret::from_bytes([b; 32])).lan_tag
    }

    #[test]
    fn only_this_vaults_current_tags_are_accepted() {
        let k = key(1);
        let ip: IpAddr = "10.9.0.2".parse().unwrap();
        let good = lan_tag::tag(&k, 7);
        assert_eq!(accept_service(&k, 7, Some("1"), Some(&good), [ip], 7475), Some(vec!["10.9.0.2:7475".into()]));
        assert_eq!(accept_service(&k, 8, Some("1"), Some(&good), [ip], 7475).map(|v| v.len()), Some(1));
        assert_eq!(accept_service(&k, 9, Some("1"), Some(&good), [ip], 7475), None, "two epochs old");
        assert_eq!(accept_service(&key(2), 7, Some("1"), Some(&good), [ip], 7475), None, "another vault");
        assert_eq!(accept_service(&k, 7, Some("2"), Some(&good), [ip], 7475), None, "unknown version");
        assert_eq!(accept_service(&k, 7, Some("1"), None, [ip], 7475), None);
        assert_eq!(accept_service(&k, 7, Some("1"), Some(&good), [ip], 0), None);
    }

    #[test]
    fn link_local_ipv6_is_skipped_and_v6_is_bracketed() {
        let k = key(1);
        let t = lan_tag::tag(&k, 1);
        let ips: Vec<IpAddr> = vec!["fe80::1".parse().unwrap(), "fd00::5".parse().unwrap()];
        assert_eq!(accept_service(&k, 1, Some("1"), Some(&t), ips, 9), Some(vec!["[fd00::5]:9".into()]));
        let only_ll: Vec<IpAddr> = vec!["fe80::1".parse().unwrap()];
        assert_eq!(accept_service(&k, 1, Some("1"), Some(&t), only_ll, 9), None);
    }

    #[test]
    fn the_advertisement_names_nothing_but_version_and_tag() {
        let info = service_info("habcdef0123456789", 7475, "0011223344556677").unwrap();
        let props: Vec<(String, String)> =
            info.get_properties().iter().map(|p| (p.key().to_owned(), p.val_str().to_owned())).collect();
        assert_eq!(props, vec![("v".into(), "1".into()), ("t".into(), "0011223344556677".into())]);
        assert_eq!(info.get_fullname(), "habcdef0123456789._hearth._tcp.local.");
    }
}
