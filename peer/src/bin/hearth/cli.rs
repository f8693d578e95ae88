//! Command-line definition (clap derive; every global flag also reads an env var).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hearth_peer::node::limits::Limits;

/// Hearth: an end-to-end encrypted vault that syncs between your devices without a cloud.
#[derive(Debug, Parser)]
#[command(
    name = "hearth",
    version,
    about = "An end-to-end encrypted vault that syncs between your devices without a cloud",
    propagate_version = true
)]
pub(crate) struct Cli {
    /// This device's home directory (several devices can live on one machine).
    #[arg(long, global = true, env = "HEARTH_HOME")]
    pub(crate) home: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// File holding the passphrase that seals this device's vault secret.
    #[arg(long, global = true, env = "HEARTH_PASSPHRASE_FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show Hearth working, with nothing to set up: three devices in temporary homes and a
    /// rendezvous on loopback inside this process; pairing, LAN and WebRTC sync, a relayed
    /// edit, a kept conflict and its resolution, step by step (Ctrl-C cleans up).
    Demo(crate::demo::DemoArgs),
    /// Create a vault (prints its 24-word phrase once), or enrol this device into an existing
    /// vault with --phrase.
    Init {
        /// Keep the secret in a 0600 key file instead of sealing it with a passphrase.
        #[arg(long)]
        no_passphrase: bool,
        /// The existing vault's phrase ("-" reads it from stdin, or asks for it without echo on
        /// a terminal; avoid giving the words themselves on the command line).
        #[arg(long)]
        phrase: Option<String>,
        /// A name for this device (kept on this device only).
        #[arg(long)]
        name: Option<String>,
    },
    /// Invite a new device: shows a QR code, a join URL and a short code (read it aloud) that
    /// `hearth join` takes on the new device, then hands it the vault, sealed, once both
    /// screens show the same security code. Waits for the joiner (Ctrl-C cancels).
    Invite(crate::invite::InviteArgs),
    /// Join a vault from an invite: the URL (or QR contents) or the short code that
    /// `hearth invite` shows on one of the vault's devices; enrols this device and syncs the
    /// whole vault. A new home, or one whose vault was rotated by another device (the old
    /// vault is kept in `<home>/retired/`).
    Join(crate::join::JoinArgs),
    /// Add an item.
    Add {
        /// Item name.
        name: String,
        /// A field as key=value (repeatable); KEY=- reads the value from stdin (everything up
        /// to EOF, byte for byte), or asks for one line without echo on a terminal, so secrets
        /// stay off the command line.
        #[arg(long = "field", value_name = "KEY=VALUE")]
        fields: Vec<String>,
        /// A field that is a secret whatever its name (masked unless --show), as KEY=VALUE;
        /// KEY=- reads it like --field (repeatable). Fields named like secrets (password, pin,
        /// token, key, otp, …) and generated ones are masked anyway.
        #[arg(long = "secret", value_name = "KEY=VALUE")]
        secrets: Vec<String>,
        /// A field whose value is a file's contents, byte for byte (an SSH key, recovery
        /// codes, a certificate; repeatable).
        #[arg(long = "field-file", value_name = "KEY=PATH")]
        field_files: Vec<String>,
        /// Fill this field with a generated password (repeatable).
        #[arg(long, value_name = "FIELD")]
        generate: Vec<String>,
        /// Length of generated passwords.
        #[arg(long, default_value_t = 24)]
        length: usize,
    },
    /// Show an item (secret fields masked, in --json too, unless --show).
    Get {
        /// Item name or id.
        name: String,
        /// Show secret fields (password, pin, token, key, ...) instead of masking them.
        #[arg(long)]
        show: bool,
        /// Only this field.
        #[arg(long, value_name = "FIELD")]
        field: Option<String>,
        /// With --field: print the value alone and a newline, unmasked, for scripts.
        #[arg(long, requires = "field")]
        raw: bool,
    },
    /// Every change to an item (or one field), oldest first: earlier values, which device,
    /// when (secret values masked unless --show).
    History {
        /// Item name or id.
        name: String,
        /// Only changes to this field.
        field: Option<String>,
        /// Show secret values instead of masking them.
        #[arg(long)]
        show: bool,
    },
    /// Copy a value to the clipboard (X11) and clear it after 45 s if it still holds it.
    Clip(crate::clip::ClipArgs),
    /// The clipboard holder `clip` starts (internal).
    #[command(hide = true)]
    ClipServe {
        /// Seconds until the clipboard is cleared.
        #[arg(long)]
        clear_after: u64,
    },
    /// Print the current one-time code of an item's TOTP field (an otpauth:// URI or a
    /// base32 secret).
    Totp {
        /// Item name or id.
        name: String,
        /// The field holding the secret (default: totp, otp, 2fa, mfa, or an otpauth:// value).
        #[arg(long, value_name = "FIELD")]
        field: Option<String>,
    },
    /// List items, or search them: names, usernames, emails and URLs (substring or fuzzy,
    /// best match first).
    List {
        /// What to look for.
        query: Option<String>,
    },
    /// Print a shell completion script (e.g. `hearth completions bash > ~/.local/share/bash-completion/completions/hearth`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; e.g. `hearth man > ~/.local/share/man/man1/hearth.1`).
    Man,
    /// Print a random password (or with --words, a passphrase of EFF wordlist words)
    /// without storing it; its entropy goes to stderr (or --json).
    Generate {
        /// Characters.
        #[arg(long, default_value_t = 24)]
        length: usize,
        /// A passphrase of this many words instead.
        #[arg(long, conflicts_with = "charset")]
        words: Option<usize>,
        /// Character classes, comma-separated: lower, upper, digits, symbols (default: all).
        #[arg(long, default_value = "")]
        charset: String,
        /// Between passphrase words.
        #[arg(long, default_value = "-")]
        separator: String,
    },
    /// Change an item.
    Edit {
        /// Item name or id.
        name: String,
        /// Set a field as key=value (repeatable; KEY=- reads the value from stdin up to EOF,
        /// or one hidden line at a terminal).
        #[arg(long = "field", value_name = "KEY=VALUE")]
        fields: Vec<String>,
        /// Set a field and mark it secret whatever its name (masked unless --show; the mark
        /// stays until the field is removed), as KEY=VALUE (repeatable).
        #[arg(long = "secret", value_name = "KEY=VALUE")]
        secrets: Vec<String>,
        /// Set a field to a file's contents, byte for byte (repeatable).
        #[arg(long = "field-file", value_name = "KEY=PATH")]
        field_files: Vec<String>,
        /// Remove a field (repeatable).
        #[arg(long = "remove-field", value_name = "KEY")]
        remove: Vec<String>,
        /// New name.
        #[arg(long)]
        rename: Option<String>,
        /// Fill this field with a generated password (repeatable).
        #[arg(long, value_name = "FIELD")]
        generate: Vec<String>,
        /// Length of generated passwords.
        #[arg(long, default_value_t = 24)]
        length: usize,
    },
    /// Delete an item.
    Rm {
        /// Item name or id.
        name: String,
    },
    /// List fields with concurrent values (the kept one and the others); with --void, the
    /// values written by revoked devices after their cut-off or on a forked device's branch
    /// (void everywhere, kept here).
    Conflicts {
        /// Show secret fields (password, pin, ...) instead of masking them.
        #[arg(long)]
        show: bool,
        /// List the values of void entries (revoked devices, forked branches) instead.
        #[arg(long)]
        void: bool,
    },
    /// Settle a conflict by writing the value to keep.
    Resolve {
        /// Item name or id.
        name: String,
        /// Field name, "(name)" for the item's name, or "(deleted)" for edit-vs-delete.
        field: String,
        /// The value to keep ("keep" or "delete" for "(deleted)"); "-" or nothing reads it
        /// from stdin (up to EOF), or asks for one line without echo on a terminal.
        #[arg(long)]
        value: Option<String>,
    },
    /// List the vault's devices with their names (every device's name shows on every device).
    Devices {
        /// Give this device a new name.
        #[arg(long, value_name = "NAME")]
        rename: Option<String>,
    },
    /// Revoke a device (lost or stolen): its future entries are refused everywhere.
    Revoke {
        /// The device's name, its id, or a unique prefix of the id (at least 4 characters; see
        /// `hearth devices`).
        #[arg(value_name = "NAME|ID")]
        device_id: String,
        /// Do not ask to confirm (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Rotate the vault (after revoking a lost device, or any time): a new secret and 24
    /// words, every item and kept conflict carried over, the old vault retired; the other
    /// devices pair again, and the old words open nothing written afterwards.
    Rotate(crate::rotate::RotateArgs),
    /// Write every entry this device holds to a sealed bundle file, or (--format) the items
    /// to another manager's file: keepass-xml, or json (in the clear).
    Export {
        /// Output file ("-": stdout).
        file: PathBuf,
        /// bundle (sealed; the default), or in the clear: keepass-xml, keepass-csv,
        /// 1password-csv, bitwarden-json or json.
        #[arg(long, default_value = "bundle", value_name = "FORMAT")]
        format: String,
    },
    /// Merge a bundle file (idempotent; bundles of other vaults are refused), or (--format)
    /// another manager's export: keepass-xml, keepass-csv, 1password-csv, bitwarden-json or
    /// json (all of the file or nothing; items already held are skipped).
    Import {
        /// Input file ("-": stdin).
        file: PathBuf,
        /// bundle (the default), keepass-xml, keepass-csv, 1password-csv, bitwarden-json or json.
        #[arg(long, default_value = "bundle", value_name = "FORMAT")]
        format: String,
    },
    /// Show this device's vault, devices and counts, and the running daemon's peers.
    Status,
    /// Make the running daemon forget the vault's secret and stop syncing (a sealed home);
    /// the next command that needs the vault asks for the passphrase and unlocks it.
    Lock,
    /// After a restore from an older copy: re-enrol this home under a new device id, so it
    /// never signs a seq its old copy already used (everything held is kept).
    Repair,
    /// Run the sync daemon: find this vault's devices on the LAN (mDNS) and at static peers,
    /// and keep them in sync over WebSocket. Commands run meanwhile go through it.
    Daemon {
        /// WebSocket listen address ("127.0.0.1:0" picks a free port; it is printed as
        /// `listening ws ADDR`).
        #[arg(long, env = "HEARTH_LISTEN", default_value_t = default_listen())]
        listen: SocketAddr,
        /// A peer to dial as HOST:PORT, for networks where multicast is blocked (repeatable;
        /// the home's `peers` file adds more).
        #[arg(long = "peer", value_name = "HOST:PORT")]
        peers: Vec<String>,
        /// Do not advertise or browse on mDNS.
        #[arg(long, env = "HEARTH_NO_MDNS")]
        no_mdns: bool,
        /// Limit mDNS to this interface (repeatable; default: all).
        #[arg(long = "mdns-interface", value_name = "NAME")]
        mdns_interfaces: Vec<String>,
        /// Stay joined to this rendezvous server (https://HOST[:PORT] behind a TLS proxy,
        /// http://HOST:PORT, or wss:// / ws://HOST:PORT with an optional path; /v1/signal by
        /// default) and sync through WebRTC with the vault's devices it sees, whatever
        /// network they are on. It also hears this vault's revocations from here.
        #[arg(long, env = "HEARTH_RENDEZVOUS", value_name = "URL")]
        rendezvous: Option<String>,
        /// Also trust this CA (PEM file) for an https:// rendezvous, beside the built-in
        /// public roots: a private CA, e.g. Caddy's `tls internal` root.
        #[arg(long, env = "HEARTH_RENDEZVOUS_CA", value_name = "FILE")]
        rendezvous_ca: Option<std::path::PathBuf>,
        /// The STUN server that tells this device its public address (default: the
        /// rendezvous host, port 3478, which `hearth-rendezvous` serves).
        #[arg(long, env = "HEARTH_STUN", value_name = "ADDR:PORT")]
        stun: Option<std::net::SocketAddr>,
        /// A TURN relay of your own (turn:HOST:PORT), used instead of the one the rendezvous
        /// offers (or where it offers none, or with no rendezvous at all).
        #[arg(long, env = "HEARTH_TURN_URL", value_name = "URL", requires = "turn_user")]
        turn_url: Option<String>,
        /// The TURN username for --turn-url.
        #[arg(long, env = "HEARTH_TURN_USER", value_name = "NAME", requires = "turn_url")]
        turn_user: Option<String>,
        /// A file holding the TURN password for --turn-url (or env HEARTH_TURN_PASSWORD;
        /// never on the command line).
        #[arg(long, env = "HEARTH_TURN_PASSWORD_FILE", value_name = "FILE")]
        turn_password_file: Option<std::path::PathBuf>,
        /// A sealed home locks after this long without a command (30s, 15m, 1h; 0 or never:
        /// never): the daemon forgets the secret and stops syncing until a command unlocks
        /// it. Default: 1h when the passphrase was typed, never when it came from a file or
        /// HEARTH_PASSPHRASE (whoever can read those can unlock anyway).
        #[arg(long, env = "HEARTH_LOCK_AFTER", value_name = "DURATION", value_parser = crate::lock::parse_duration)]
        lock_after: Option<crate::lock::LockAfter>,
        /// What the daemon spends on others at most.
        #[command(flatten)]
        limits: DaemonLimits,
    },
    /// Connect to another device of the vault through WebRTC with no server at all: one side
    /// prints an offer (--offer), a person carries it to the other (--answer TEXT), and
    /// carries the reply back. Needs the daemon running on both.
    #[command(group(clap::ArgGroup::new("step").required(true).args(["offer", "answer", "accept"])))]
    Connect {
        /// Print an offer, then read the other device's reply from stdin.
        #[arg(long)]
        offer: bool,
        /// Answer this offer text ("-" reads it from stdin) and print the reply.
        #[arg(long, value_name = "TEXT")]
        answer: Option<String>,
        /// Accept this reply to an offer ("-" reads it from stdin): for scripts that run
        /// --offer and the accept apart.
        #[arg(long, value_name = "TEXT")]
        accept: Option<String>,
        /// How long to wait for the channel to open (default: 60 s after a reply is pasted;
        /// 600 s after answering, while a person carries the reply back).
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
        /// Also write the offer (or the reply) as a QR code PNG here, for a phone to scan.
        #[arg(long, value_name = "FILE")]
        png: Option<PathBuf>,
    },
    /// Tell how this network's NAT maps and filters (RFC 5780), and whether direct
    /// connections are expected from here or a TURN relay is needed.
    NatCheck {
        /// The STUN server to test against (it needs an alternate address: hearth-rendezvous
        /// --stun-alternate); default: the rendezvous's own, its host on port 3478.
        #[arg(long, env = "HEARTH_STUN", value_name = "HOST:PORT")]
        stun: Option<String>,
        /// The rendezvous whose STUN server to use when --stun is not given.
        #[arg(long, env = "HEARTH_RENDEZVOUS", value_name = "URL")]
        rendezvous: Option<String>,
    },
}

/// `hearth daemon`'s resource limits (defaults suit a home or office LAN).
#[derive(Debug, clap::Args)]
pub(crate) struct DaemonLimits {
    /// Inbound connections served at once; one more costs an accept and a close.
    #[arg(long, env = "HEARTH_MAX_INBOUND", default_value_t = Limits::default().inbound, value_name = "N")]
    pub(crate) max_inbound: usize,
    /// Inbound connections served at once from one address (an IPv6 /64 counts as one).
    #[arg(long, env = "HEARTH_MAX_INBOUND_PER_SOURCE", default_value_t = Limits::default().inbound_per_source, value_name = "N")]
    pub(crate) max_inbound_per_source: usize,
    /// Discovered mDNS services remembered as dial targets at once.
    #[arg(long, env = "HEARTH_MAX_MDNS_TARGETS", default_value_t = Limits::default().mdns_targets, value_name = "N")]
    pub(crate) max_mdns_targets: usize,
    /// Outbound dials (connect and upgrade) in flight at once.
    #[arg(long, env = "HEARTH_MAX_DIALS", default_value_t = Limits::default().dials_in_flight, value_name = "N")]
    pub(crate) max_dials: usize,
    /// Bytes queued for one connection at most; a peer that stops reading is closed.
    #[arg(long, env = "HEARTH_WRITE_BUFFER", default_value_t = Limits::default().write_buffer, value_name = "BYTES")]
    pub(crate) write_buffer: usize,
    /// Seconds a write may make no progress before its connection is closed.
    #[arg(long, env = "HEARTH_WRITE_TIMEOUT", default_value_t = Limits::default().write_timeout.as_secs(), value_name = "SECS")]
    pub(crate) write_timeout: u64,
}

impl DaemonLimits {
    /// The node's limits.
    pub(crate) fn to_limits(&self) -> Limits {
        Limits {
            inbound: self.max_inbound.max(1),
            inbound_per_source: self.max_inbound_per_source.max(1),
            mdns_targets: self.max_mdns_targets,
            dials_in_flight: self.max_dials.max(1),
            write_buffer: self.write_buffer,
            write_timeout: std::time::Duration::from_secs(self.write_timeout.max(1)),
        }
    }
}

/// `[::]:7475` (IPv6 and IPv4) where IPv6 exists, else `0.0.0.0:7475`.
fn default_listen() -> SocketAddr {
    let port = hearth_peer::node::DEFAULT_PORT;
    let v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    if std::net::TcpListener::bind(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))).is_ok() {
        v6
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port))
    }
}
