//! Shared helpers for Hearth's end-to-end tests: finding the built binaries and running
//! them as real processes.
#![forbid(unsafe_code)]

pub mod caddy;
pub mod compose;
pub mod device;
pub mod faults;
pub mod mitm;
pub mod netns;
pub mod qr;
pub mod rendezvous;

use std::io::{BufRead, BufReader, Lines};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

/// The path of a workspace binary (`hearth`, `hearth-stun`, ...) in the target directory that
/// holds this executable: beside it (a benchmark in `target/<profile>/`) or one level up (a
/// test in `target/<profile>/deps/`). The test command builds the binaries before running tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let here = exe.parent().expect("target dir");
    let path = [here.join(name), here.parent().map(|d| d.join(name)).unwrap_or_default()]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is missing beside {}: run `cargo build --workspace --bins` first (scripts/test does)",
                exe.display()
            )
        });
    path
}

/// A child process killed (and reaped) when dropped, so a failing test leaves no server behind.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Its stdout lines, after those already consumed.
    pub stdout: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    /// Spawns `cmd` with piped stdout.
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { child, stdout }
    }

    /// Reads stdout lines until `n` lines of the form `listening udp ADDR` have appeared.
    pub fn listening_addrs(&mut self, n: usize) -> Vec<SocketAddr> {
        let mut addrs = Vec::new();
        while addrs.len() < n {
            let line = self.stdout.next().expect("process exited before listening").expect("read stdout");
            if let Some(a) = line.strip_prefix("listening udp ") {
                addrs.push(a.parse().expect("address"));
            }
        }
        addrs
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when the IPv6 loopback is usable here.
pub fn has_ipv6() -> bool {
    std::net::UdpSocket::bind("[::1]:0").is_ok()
}

/// A rendezvous identity: device `i` of the test vault whose root key is `[seed; 32]`
/// (device id `[i + 1; 16]`), enrolled by a root-signed record.
pub fn rendezvous_identity(seed: u8, i: u8) -> hearth_rendezvous::client::Identity {
    use ed25519_dalek::SigningKey;
    use hearth_proto::membership::{Enrollment, MembershipBody, MembershipRecord};
    let root = SigningKey::from_bytes(&[seed; 32]);
    let device_key = SigningKey::from_bytes(&[seed.wrapping_add(50).wrapping_add(i); 32]);
    let record = MembershipRecord::sign(
        &root,
        MembershipBody::Enroll(Enrollment {
            vault_id: hearth_proto::vault_id_of(&root.verifying_key()),
            device_id: hearth_proto::ids::DeviceId([i.wrapping_add(1); 16]),
            sign_pk: device_key.verifying_key().to_bytes(),
            dh_pk: [0; 32],
            at_ms: 0,
        }),
    );
    hearth_rendezvous::client::Identity { root: root.verifying_key(), record, device_key, revocations: Vec::new() }
}
