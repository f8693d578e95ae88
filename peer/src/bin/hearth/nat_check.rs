//! `hearth nat-check`: how this network's NAT maps and filters (RFC 5780 against the
//! family's STUN server) and, plainly, whether direct connections are expected from here or
//! a TURN relay is needed.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{anyhow, Context};
use hearth_peer::nat;
use hearth_peer::node::rendezvous::{signal_url, stun_host};
use serde_json::json;

/// Runs the check against `stun` (`HOST:PORT`), or the STUN server of `rendezvous`.
pub(crate) fn run(json_out: bool, stun: Option<String>, rendezvous: Option<String>) -> anyhow::Result<()> {
    let target = match (stun, rendezvous) {
        (Some(s), _) => s,
        (None, Some(url)) => signal_url(&url).and_then(|u| stun_host(&u)).ok_or_else(|| {
            anyhow!("rendezvous URL {url:?}: expected https://HOST[:PORT] (or http://, wss://, ws://)")
        })?,
        (None, None) => {
            return Err(anyhow!(
                "no STUN server: give --stun HOST:PORT, or --rendezvous URL (env HEARTH_RENDEZVOUS) to use its own"
            ))
        }
    };
    let server: SocketAddr = target
        .to_socket_addrs()
        .with_context(|| format!("STUN server {target:?}: expected HOST:PORT"))?
        .next()
        .ok_or_else(|| anyhow!("STUN server {target:?}: the name has no address"))?;
    let b = nat::check(server)?;
    let advice = nat::advice(&b, server);
    if json_out {
        let mut v = serde_json::to_value(nat::status(&b))?;
        v["stun"] = json!(server.to_string());
        v["alternate"] = json!(b.alternate.map(|a| a.to_string()));
        v["advice"] = json!(advice);
        println!("{v}");
    } else {
        let alt = b.alternate.map_or_else(|| "no alternate address".to_owned(), |a| format!("alternate {a}"));
        println!("STUN server     {server} ({alt})");
        println!("public address  {}", b.mapped);
        println!("mapping         {} ({})", b.mapping.as_str(), nat::mapping_words(b.mapping));
        println!("filtering       {} ({})", b.filtering.as_str(), nat::filtering_words(b.filtering));
        println!("{advice}");
    }
    Ok(())
}
