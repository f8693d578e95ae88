//! What each command does, and how it prints (human text or `--json`).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use hearth_peer::actions::{self, ActionError, WriteOutcome, WriteRequest};
use hearth_peer::cli::secret_fields::{is_secret, is_secret_in};
use hearth_peer::home::{Home, HomeError, Protection};
use hearth_peer::identity::{PhraseError, VaultKeys, VaultSecret};
use hearth_peer::ids::DeviceId;
use hearth_peer::node::control::{Client, ControlError, Reply, Request};
use hearth_peer::reads::{ConflictView, ReadRequest, View};
use hearth_peer::vault::{generate_password, LookupError, Replica, SqliteStore};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

use crate::cli::{Cli, Command};

/// What a masked secret value shows.
pub(crate) const MASK: &str = "••••••••";

/// Exit status for an error: 3 for a name that did not resolve, 4 for a locked vault or a
/// wrong passphrase/phrase, 1 otherwise (clap uses 2 for usage errors).
pub(crate) fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<LookupError>().is_some()
        || e.downcast_ref::<NotFound>().is_some()
        || e.downcast_ref::<ActionError>().is_some_and(ActionError::is_lookup)
    {
        3
    } else if matches!(e.downcast_ref::<HomeError>(), Some(HomeError::Locked | HomeError::WrongPassphrase))
        || e.downcast_ref::<PhraseError>().is_some()
    {
        4
    } else if e.downcast_ref::<OutcomeUnknown>().is_some() {
        5
    } else {
        1
    }
}

/// A write the daemon took without replying (exit status 5): it may have been applied.
#[derive(Debug, thiserror::Error)]
#[error(
    "the daemon took this write but sent no reply ({why}), so it may or may not have been applied; \
     check with `hearth --home {home} list` (or `get NAME`) before trying again"
)]
pub(crate) struct OutcomeUnknown {
    why: String,
    home: String,
}

/// A name the daemon could not resolve (exit status 3, like a local lookup).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NotFound(pub(crate) String);

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub(crate) struct Ctx {
    pub(crate) home: Home,
    pub(crate) json: bool,
    pub(crate) passphrase: Option<Zeroizing<String>>,
    /// `--home 'DIR' ` when the user gave one, for the commands hints suggest.
    pub(crate) home_arg: String,
}

impl Ctx {
    pub(crate) fn open(&self) -> anyhow::Result<Replica<SqliteStore>> {
        let r = match self.home.open(self.passphrase.as_deref().map(String::as_str)) {
            // A sealed secret and a person at the terminal: ask, without echo.
            Err(HomeError::Locked) if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
                let pass = read_secret("passphrase: ")?;
                self.home.open(Some(&pass))?
            }
            other => other?,
        };
        self.warn_retired(&r);
        Ok(r)
    }

    /// The passphrase that opens this home: the one given (env or file), else asked at the
    /// terminal when the home is sealed; none for a key-file home.
    pub(crate) fn home_passphrase(&self) -> anyhow::Result<Option<Zeroizing<String>>> {
        match &self.passphrase {
            Some(p) => Ok(Some(p.clone())),
            None if self.home.is_sealed() => Ok(Some(read_secret("passphrase: ")?)),
            None => Ok(None),
        }
    }

    /// A retired vault still reads (nothing held is lost), with the reason on stderr.
    fn warn_retired(&self, r: &Replica<SqliteStore>) {
        let Some(ret) = r.retirement() else { return };
        let mut text = hearth_peer::vault::explain_retirement(ret);
        if ret.by == r.device_id() {
            text = format!(
                "this device retired this vault, but its rotation did not finish: run `hearth {}rotate` to finish it",
                self.home_arg
            );
        }
        let late = r.uncarried();
        if late > 0 {
            text.push_str(&format!(
                "; {late} edit(s) held here came after the rotation and are not in the new vault: they stay readable here, re-enter them once paired"
            ));
        }
        if self.json {
            eprintln!("{}", json!({ "warning": text }));
        } else {
            eprintln!("hearth: {text}");
        }
    }

    /// Applies a write: through the daemon's control socket while one runs (it is then the
    /// log's only writer), else here under the home's writer lock.
    pub(crate) fn write(&self, req: WriteRequest) -> anyhow::Result<WriteOutcome> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(daemon) = Client::connect(self.home.dir()) {
                let reply = match self.ask_daemon(daemon, &Request::Write { write: req }) {
                    Err(e) => match e.downcast::<ControlError>() {
                        Ok(ControlError::OutcomeUnknown(why)) => {
                            return Err(OutcomeUnknown { why, home: self.home.dir().display().to_string() }.into())
                        }
                        Ok(other) => return Err(other.into()),
                        Err(e) => return Err(e),
                    },
                    Ok(reply) => reply,
                };
                return match reply {
                    Reply::Written(out) => Ok(out),
                    Reply::Error { message, lookup: true } => Err(NotFound(message).into()),
                    Reply::Error { message, .. } => Err(anyhow::anyhow!(message)),
                    other => bail!("the daemon answered a write with {other:?}"),
                };
            }
            match self.home.lock_writer() {
                Ok(_lock) => {
                    if let Some(out) = self.write_from_view(&req) {
                        return out;
                    }
                    let mut r = self.open()?;
                    if r.forked_self() || self.home.fork_pending() {
                        drop(r);
                        self.settle_own_fork()?;
                        r = self.open()?;
                    }
                    let out = actions::apply(&mut r, &req, now_ms())?;
                    // An import that settled a fork of this device's own log: re-enrol now.
                    if r.forked_self() {
                        drop(r);
                        self.settle_own_fork()?;
                    }
                    return Ok(out);
                }
                // A daemon is starting, or another command is writing: wait for either.
                Err(HomeError::Busy(..)) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Re-enrols this home after a fork of its own log (see [`Home::settle_own_fork`]) and
    /// says so in one line.
    fn settle_own_fork(&self) -> anyhow::Result<()> {
        let pass = self.passphrase.as_deref().map(String::as_str);
        match self.home.settle_own_fork(pass, now_ms()) {
            Ok(Some(done)) => eprintln!("{}", done.explain()),
            Ok(None) => {}
            // A sealed home whose passphrase was typed at the prompt: ask again.
            Err(HomeError::Locked) if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
                let pass = read_secret("passphrase: ")?;
                if let Some(done) = self.home.settle_own_fork(Some(&pass), now_ms())? {
                    eprintln!("{}", done.explain());
                }
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    pub(crate) fn print(&self, value: Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{text}");
            }
        }
    }
}

fn default_home() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME") {
        Some(d) => PathBuf::from(d).join("hearth"),
        None => std::env::var_os("HOME")
            .map_or_else(|| PathBuf::from(".hearth"), |h| PathBuf::from(h).join(".local/share/hearth")),
    }
}

fn read_passphrase(cli: &Cli) -> anyhow::Result<Option<Zeroizing<String>>> {
    if let Some(f) = &cli.passphrase_file {
        let s = Zeroizing::new(std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?);
        return Ok(Some(Zeroizing::new(s.trim_end_matches(['\n', '\r']).to_owned())));
    }
    Ok(std::env::var("HEARTH_PASSPHRASE").ok().map(Zeroizing::new))
}

/// Runs one command.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx {
        home: Home::new(cli.home.clone().unwrap_or_else(default_home)),
        json: cli.json,
        passphrase: read_passphrase(&cli)?,
        home_arg: cli.home.as_ref().map_or_else(String::new, |h| format!("--home '{}' ", h.display())),
    };
    match cli.command {
        Command::Init { no_passphrase, phrase, name } => init(&ctx, no_passphrase, phrase, name),
        Command::Demo(args) => crate::demo::run(ctx.json, args),
        Command::Invite(args) => crate::invite::run(&ctx, args),
        Command::Join(args) => crate::join::run(&ctx, args),
        Command::Rotate(args) => crate::rotate::run(&ctx, args),
        Command::Add { name, fields, secrets, field_files, generate, length } => {
            let secret = secret_keys(&secrets, &generate);
            let fields = parse_fields(&[fields, secrets].concat(), &field_files, &generate, length)?;
            let made = generated(&fields, &generate);
            let out = ctx.write(WriteRequest::Add { name: name.clone(), fields, secret })?;
            let id = out.item.map(|i| i.to_hex()).unwrap_or_default();
            ctx.print(json!({"ok": true, "id": id, "name": name, "generated": made}), || {
                format!("added '{name}'{}", show_generated(&made))
            });
            Ok(())
        }
        Command::Get { name, show, field, raw } => {
            crate::get::run(&ctx, &crate::get::Get { name: &name, show, field: field.as_deref(), raw })
        }
        Command::History { name, field, show } => crate::history::run(&ctx, &name, field.as_deref(), show),
        Command::Clip(args) => crate::clip::run(&ctx, &args),
        Command::ClipServe { clear_after } => crate::clip::serve(clear_after),
        Command::Totp { name, field } => crate::totp::run(&ctx, &name, field.as_deref()),
        Command::List { query } => crate::list::run(&ctx, query.as_deref()),
        Command::Completions { shell } => crate::completions::completions(shell),
        Command::Man => crate::completions::man(),
        Command::Generate { length, words, charset, separator } => {
            crate::generate::run(&ctx, length, words, &charset, &separator)
        }
        Command::Edit { name, fields, secrets, field_files, remove, rename, generate, length } => {
            let secret = secret_keys(&secrets, &generate);
            let mut fields = parse_fields(&[fields, secrets].concat(), &field_files, &generate, length)?;
            let made = generated(&fields, &generate);
            fields.extend(remove.into_iter().map(|k| (k, None)));
            let out = ctx.write(WriteRequest::Edit { name: name.clone(), fields, rename: rename.clone(), secret })?;
            let id = out.item.map(|i| i.to_hex()).unwrap_or_default();
            let shown = rename.unwrap_or(name);
            ctx.print(json!({"ok": true, "id": id, "name": shown, "generated": made}), || {
                format!("updated '{shown}'{}", show_generated(&made))
            });
            Ok(())
        }
        Command::Rm { name } => {
            let out = ctx.write(WriteRequest::Rm { name: name.clone() })?;
            let id = out.item.map(|i| i.to_hex()).unwrap_or_default();
            ctx.print(json!({"ok": true, "id": id}), || format!("removed '{name}'"));
            Ok(())
        }
        Command::Conflicts { show, void: false } => {
            let View::Conflicts { conflicts: c } = ctx.read(ReadRequest::Conflicts)? else {
                bail!("asked for conflicts, got another view");
            };
            let shown = |c: &ConflictView, v: &Option<String>| shown_value(c.secret, v.as_deref(), show);
            ctx.print(conflicts_json(&c, show), || {
                if c.is_empty() {
                    return "no conflicts".into();
                }
                c.iter()
                    .map(|cv| {
                        let c = &cv.conflict;
                        let losing: Vec<String> = c.losing.iter().map(|v| shown(cv, v)).collect();
                        format!(
                            "{} / {}: kept {}, also {}\n  settle with: hearth {}resolve '{}' '{}'  (asks for the value to keep, or reads it from stdin)",
                            c.name,
                            c.field,
                            shown(cv, &c.kept),
                            losing.join(", "),
                            ctx.home_arg,
                            c.name,
                            c.field
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        Command::Conflicts { show, void: true } => void_values(&ctx, show),
        Command::Resolve { name, field, value } => {
            let value = match value.as_deref() {
                None | Some("-") => read_value(&field)?.to_string(),
                Some(v) => v.to_owned(),
            };
            let out = ctx.write(WriteRequest::Resolve { name: name.clone(), field: field.clone(), value })?;
            let id = out.item.map(|i| i.to_hex()).unwrap_or_default();
            ctx.print(json!({"ok": true, "id": id, "field": field}), || format!("resolved '{name}' / {field}"));
            Ok(())
        }
        Command::Devices { rename } => crate::devices::list(&ctx, rename),
        Command::Revoke { device_id, yes } => crate::devices::revoke(&ctx, &device_id, yes),
        Command::Export { file, format } => crate::transfer::export(&ctx, &file, &format),
        Command::Import { file, format } => crate::transfer::import(&ctx, &file, &format),
        Command::Daemon {
            listen,
            peers,
            no_mdns,
            mdns_interfaces,
            rendezvous,
            rendezvous_ca,
            stun,
            turn_url,
            turn_user,
            turn_password_file,
            lock_after,
            limits,
        } => {
            let turn = crate::daemon::turn_override(turn_url, turn_user, turn_password_file)?;
            let config = hearth_peer::node::NodeConfig {
                home: ctx.home.clone(),
                passphrase: ctx.passphrase.clone(),
                listen,
                peers,
                mdns: !no_mdns,
                mdns_interfaces,
                // A paired device meets its vault where it paired, without flags.
                rendezvous: match rendezvous {
                    Some(r) => Some(r),
                    None => ctx.home.stored_rendezvous()?,
                },
                rendezvous_ca,
                stun,
                turn,
                limits: limits.to_limits(),
                lock_after: lock_after.and_then(crate::lock::LockAfter::duration),
            };
            crate::daemon::run(config, lock_after.is_some())
        }
        Command::Status => status(&ctx),
        Command::Lock => crate::lock::run(&ctx),
        Command::NatCheck { stun, rendezvous } => crate::nat_check::run(ctx.json, stun, rendezvous),
        Command::Connect { offer, answer, accept, wait, png } => {
            let (step, default_wait) = match (offer, answer, accept) {
                (_, Some(a), _) => (crate::connect::Step::Answer(a), 600),
                (_, _, Some(a)) => (crate::connect::Step::Accept(a), 60),
                _ => (crate::connect::Step::Offer, 60),
            };
            let wait = Duration::from_secs(wait.unwrap_or(default_wait));
            crate::connect::run(ctx.home.dir(), ctx.json, step, wait, png.as_deref())
        }
        Command::Repair => {
            if Client::connect(ctx.home.dir()).is_some() {
                bail!("stop the running daemon first (it holds this home)");
            }
            let _lock = ctx.home.lock_writer()?;
            let (old, new) = ctx.home.repair(ctx.passphrase.as_deref().map(String::as_str), now_ms())?;
            ctx.print(json!({"ok": true, "old_device_id": old.to_hex(), "device_id": new.to_hex()}), || {
                format!("This home now writes as device {new} (it was {old}, whose log an older copy had reused); everything it holds is kept.")
            });
            Ok(())
        }
    }
}

fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let mut locked = false;
    let daemon = match Client::connect(ctx.home.dir()) {
        Some(mut c) => match c.request(&Request::Status, Duration::from_secs(10))? {
            Reply::Status(d) => Some(*d),
            Reply::Locked { .. } => {
                locked = true;
                None
            }
            // Stopping, or restarting under a new device id after a fork: not serving now.
            Reply::Error { .. } => None,
            other => bail!("the daemon answered a status request with {other:?}"),
        },
        None => None,
    };
    // The vault's counts from the running daemon (no passphrase asked); a locked daemon is
    // not unlocked for a status: the home is read here instead, unless it is sealed and no
    // passphrase was given (a status asks for none: it says the daemon is locked, and the
    // vault's counts are unknown until something unlocks it).
    let sum = if daemon.is_some() {
        Some(ctx.read(ReadRequest::Summary)?)
    } else if locked && ctx.passphrase.is_none() && ctx.home.is_sealed() {
        None
    } else {
        Some(ctx.read_here(&ReadRequest::Summary)?)
    };
    let sum = match sum {
        Some(View::Summary(s)) => Some(s),
        None => None,
        Some(_) => bail!("asked for a summary, got another view"),
    };
    let name_of = |hex: &str| sum.as_ref().and_then(|s| s.device_names.get(hex).cloned());
    let v = json!({
        "home": ctx.home.dir().display().to_string(),
        "vault_id": sum.as_ref().map(|s| &s.vault_id),
        "device_id": sum.as_ref().map(|s| &s.device_id),
        "items": sum.as_ref().map(|s| s.items),
        "entries": sum.as_ref().map(|s| s.entries),
        "devices": sum.as_ref().map(|s| s.devices),
        "conflicts": sum.as_ref().map(|s| s.conflicts),
        "daemon": daemon.is_some() || locked,
        "locked": locked,
        "listen": daemon.as_ref().map(|d| d.listen.clone()).unwrap_or_default(),
        "peers": daemon.as_ref().map(|d| d.peers.iter().map(|p| {
            let mut v = serde_json::to_value(p).unwrap_or_default();
            v["name"] = json!(name_of(&p.device));
            v
        }).collect::<Vec<Value>>()).unwrap_or_default(),
        "rendezvous": daemon.as_ref().and_then(|d| d.rendezvous.clone()),
        "webrtc": daemon.as_ref().and_then(|d| d.webrtc.clone()),
        "dials": daemon.as_ref().map(|d| d.dials.clone()).unwrap_or_default(),
        "mdns_ignored": daemon.as_ref().and_then(|d| d.mdns_ignored),
        "clock_ahead": sum.iter().flat_map(|s| &s.clock_ahead).map(|(d, ms)| json!({"device": d, "ms": ms})).collect::<Vec<_>>(),
    });
    ctx.print(v.clone(), || {
        let mut out = match &sum {
            Some(_) => format!(
                "vault   {}\ndevice  {}\nitems   {}\nentries {}\ndevices {}\nconflicts {}\n",
                v["vault_id"].as_str().unwrap_or_default(),
                v["device_id"].as_str().unwrap_or_default(),
                v["items"],
                v["entries"],
                v["devices"],
                v["conflicts"]
            ),
            None => String::new(),
        };
        for c in v["clock_ahead"].as_array().into_iter().flatten() {
            out += &format!(
                "clock   device {} writes timestamps {:.1} h ahead of this device (its clock is wrong)\n",
                c["device"].as_str().unwrap_or_default(),
                (c["ms"].as_u64().unwrap_or(0).saturating_sub(now_ms())) as f64 / 3.6e6
            );
        }
        match &daemon {
            None if locked => {
                out += "daemon  running, locked: not syncing until a command unlocks it (it asks for the passphrase)";
                if sum.is_none() {
                    out += "; the vault's counts are shown once it is unlocked";
                }
            }
            None => out += "daemon  not running (start it with `hearth daemon`)",
            Some(d) => {
                out += &format!("daemon  running, listening on {}\n", d.listen.join(", "));
                if let Some(rv) = &d.rendezvous {
                    out += &match &rv.error {
                        None => format!(
                            "rendezvous {} joined, {} other devices there (joined is not syncing: the sessions are the peer lines)\n",
                            rv.url, rv.online
                        ),
                        Some(e) => format!("rendezvous {} not joined: {e}\n", rv.url),
                    };
                }
                if let Some(w) = &d.webrtc {
                    if let Some(n) = &w.nat {
                        let direct = match n.direct_possible {
                            Some(true) => "direct connections expected",
                            Some(false) => "symmetric: direct connections not expected, TURN needed",
                            None => "behaviour not known (`hearth nat-check`)",
                        };
                        out += &format!("nat     mapping {}, filtering {}: {direct}\n", n.mapping, n.filtering);
                    }
                    for u in &w.unreachable {
                        out += &format!("unreached {} ({} attempts): {}\n", u.device, u.attempts, u.hint);
                    }
                }
                for t in d.dials.iter().filter(|t| t.state != "connected") {
                    let tries = if t.failures > 0 { format!(" after {} failed tries", t.failures) } else { String::new() };
                    let next = t.next_retry_ms.map_or(String::new(), |ms| format!(", next try in {:.0} s", ms as f64 / 1000.0));
                    out += &format!("dial    {} ({}): {}{tries}{next}\n", t.target, t.source, t.state);
                }
                if d.peers.is_empty() {
                    out += "peers   none connected\n";
                }
                for p in &d.peers {
                    let ago = p.last_sync_ms.map_or("never".to_owned(), ago);
                    let who = name_of(&p.device).map_or(p.device.clone(), |n| format!("{n} ({})", p.device));
                    out += &format!(
                        "peer    {who} via {} {} ({}), last sync {}, sent {}, received {}, pending {}\n",
                        p.path, p.addr, p.direction, ago, p.sent, p.received, p.pending
                    );
                }
                // Devices synced since the daemon started that are not connected now.
                for (dev, t) in d.last_synced.iter().filter(|(dev, _)| !d.peers.iter().any(|p| &p.device == *dev)) {
                    let who = name_of(dev).map_or(dev.clone(), |n| format!("{n} ({dev})"));
                    out += &format!("synced  {who} {}, not connected now\n", ago(*t));
                }
            }
        }
        out.trim_end().to_owned()
    });
    Ok(())
}

fn init(ctx: &Ctx, no_passphrase: bool, phrase: Option<String>, name: Option<String>) -> anyhow::Result<()> {
    if ctx.home.exists() {
        return Err(HomeError::AlreadyInitialized(ctx.home.dir().to_owned()).into());
    }
    let protection = new_protection(ctx, no_passphrase)?;
    let (secret, created) = match phrase.as_deref() {
        None => (VaultSecret::generate(), true),
        Some("-") => (VaultSecret::from_phrase(&read_secret("vault phrase (24 words): ")?)?, false),
        Some(p) => (VaultSecret::from_phrase(p)?, false),
    };
    let device = DeviceId::random();
    // All or nothing, opened with the passphrase already read: a typo at a third prompt used
    // to leave a home that no device could ever join, with its words never shown.
    ctx.home.create_enrolled(&secret, device, &protection, now_ms())?;
    let vault = VaultKeys::derive(&secret).vault_id;
    let shown = created.then(|| secret.phrase());
    ctx.print(
        json!({"phrase": shown.as_deref().map(String::as_str), "device_id": device.to_hex(), "vault_id": vault.to_hex()}),
        || match &shown {
            Some(p) => format!(
                "Created vault {vault}.\n\nWrite down these 24 words and keep them safe. They are the only way to add\na device or recover the vault, and they are shown only this once:\n\n  {}\n\nThis device: {device}",
                p.as_str()
            ),
            None => format!("This device ({device}) is enrolled in vault {vault}. Import a bundle or sync to fetch items."),
        },
    );
    // After the words are shown: nothing here can keep them from the user.
    if let Some(n) = name {
        let mut r = ctx.home.open(protection.passphrase())?;
        name_device(&mut r, &n)?;
    }
    Ok(())
}

/// Names this device: kept on it (`DEVICE_NAME`) and written into the vault, for every device
/// to show.
pub(crate) fn name_device(r: &mut Replica<SqliteStore>, name: &str) -> anyhow::Result<()> {
    r.store_mut_meta(hearth_peer::home::DEVICE_NAME, name.trim().as_bytes())?;
    hearth_peer::actions::apply(r, &WriteRequest::NameDevice { name: name.to_owned() }, now_ms())?;
    Ok(())
}

/// How a new home keeps its vault secret: a key file, or sealed under the passphrase given
/// (env or file) or asked for twice at the terminal.
pub(crate) fn new_protection(ctx: &Ctx, no_passphrase: bool) -> anyhow::Result<Protection> {
    if no_passphrase {
        return Ok(Protection::KeyFile);
    }
    match &ctx.passphrase {
        Some(p) if !p.is_empty() => Ok(Protection::Passphrase(p.clone())),
        _ if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            let p = read_secret("new passphrase for this device: ")?;
            hearth_peer::home::check_passphrase(&p)?;
            if *read_secret("the same again: ")? != *p {
                bail!("the two passphrases differ");
            }
            Ok(Protection::Passphrase(p))
        }
        _ => bail!("choose how to protect the vault secret: set HEARTH_PASSPHRASE, use --passphrase-file FILE, or pass --no-passphrase"),
    }
}

/// Reads one secret line: from the terminal without echo, or from stdin when it is piped.
pub(crate) fn read_secret(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        return Ok(Zeroizing::new(rpassword::prompt_password(prompt).context("reading from the terminal")?));
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().lock().read_line(&mut line).context("reading stdin")?;
    Ok(Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned()))
}

/// Reads a field's value: everything up to EOF, byte for byte, when stdin is a pipe or a file
/// (keys, recovery codes, certificates); one line without echo at a terminal.
fn read_value(key: &str) -> anyhow::Result<Zeroizing<String>> {
    use std::io::{IsTerminal, Read};
    if std::io::stdin().is_terminal() {
        return read_secret(&format!(
            "{key} (one line, hidden; several lines: --field-file {key}=PATH or pipe them in): "
        ));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    std::io::stdin().lock().read_to_end(&mut bytes).context("reading stdin")?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| anyhow::anyhow!("the value of {key} on stdin is not UTF-8 text"))?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// `hearth conflicts --void`: what revoked devices wrote after their cut-off, and forked branches.
fn void_values(ctx: &Ctx, show: bool) -> anyhow::Result<()> {
    let r = ctx.open()?;
    let void = r.voided_values()?;
    let rows: Vec<Value> = void
        .iter()
        .map(|v| {
            let current = r.state().items.get(&v.item).filter(|s| s.is_visible()).map(|s| s.name().to_owned());
            json!({
                "device": v.author.to_hex(), "seq": v.seq, "item": v.item.to_hex(),
                "item_name": current, "name": v.name, "deleted": v.deleted,
                "fields": v.fields.iter().map(|(k, v)| json!({"field": k, "value": v})).collect::<Vec<_>>(),
            })
        })
        .collect();
    ctx.print(Value::Array(rows.clone()), || {
        if void.is_empty() {
            return "no void values".into();
        }
        let mut out = String::from(
            "Values written by revoked devices after their cut-off, or on a forked branch (void on every device):\n",
        );
        for v in &void {
            let item = r.state().items.get(&v.item).filter(|s| s.is_visible()).map(|s| s.name().to_owned());
            let label = item.clone().or_else(|| v.name.clone()).unwrap_or_else(|| v.item.to_hex());
            out += &format!("{label} (device {} #{}):", v.author, v.seq);
            if v.deleted {
                out += " deleted the item\n";
                continue;
            }
            out += "\n";
            for (k, val) in &v.fields {
                let secret = r.state().items.get(&v.item).map_or(is_secret(k), |it| is_secret_in(it, k));
                let shown = shown_value(secret, val.as_deref(), show);
                let again = match &item {
                    Some(n) => format!("hearth {}resolve '{n}' '{k}' --value -", ctx.home_arg),
                    None => format!("hearth {}add '{label}' --field '{k}=-'", ctx.home_arg),
                };
                out += &format!("  {k}: {shown}   re-apply: {again}\n");
            }
        }
        out.trim_end().to_owned()
    });
    Ok(())
}

/// Parses `key=value` pairs and `key=path` files, and adds generated passwords.
fn parse_fields(
    fields: &[String],
    files: &[String],
    generate: &[String],
    length: usize,
) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let piped = !std::io::IsTerminal::is_terminal(&std::io::stdin());
    if piped && fields.iter().filter(|f| f.split_once('=').is_some_and(|(_, v)| v == "-")).count() > 1 {
        bail!("only one KEY=- can read stdin when it is not a terminal (it takes everything up to EOF); give the others with --field-file KEY=PATH");
    }
    let mut out = Vec::new();
    for f in fields {
        // Errors never repeat the argument: it may hold a secret.
        let Some((k, v)) = f.split_once('=') else {
            bail!("--field takes KEY=VALUE (KEY=- to type the value); an argument had no '='")
        };
        if k.is_empty() {
            bail!("a --field has an empty key");
        }
        let v = if v == "-" { read_value(k)?.to_string() } else { v.to_owned() };
        out.push((k.to_owned(), Some(v)));
    }
    for f in files {
        let Some((k, path)) = f.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("--field-file takes KEY=PATH")
        };
        let bytes = Zeroizing::new(std::fs::read(path).with_context(|| format!("reading {path} for field {k}"))?);
        let v = String::from_utf8(bytes.to_vec())
            .map_err(|_| anyhow::anyhow!("{path} (field {k}) is not UTF-8 text; Hearth fields hold text"))?;
        out.push((k.to_owned(), Some(v)));
    }
    if !(8..=256).contains(&length) {
        bail!("--length must be between 8 and 256");
    }
    for k in generate {
        out.push((k.clone(), Some(generate_password(length))));
    }
    Ok(out)
}

/// Asks `question` at the terminal; an error unless the answer is yes (or no terminal).
pub(crate) fn confirm(question: &str) -> anyhow::Result<()> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("not confirmed: stdin is not a terminal; add --yes to confirm");
    }
    eprint!("{question}");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        bail!("not confirmed; nothing changed");
    }
    Ok(())
}

/// A field's value as the human output shows it: quoted, masked when secret and not
/// `show`, or "(removed)".
fn shown_value(secret: bool, value: Option<&str>, show: bool) -> String {
    match value {
        None => "(removed)".to_owned(),
        Some(_) if !show && secret => format!("{MASK} (--show to reveal)"),
        Some(v) => format!("{v:?}"),
    }
}

/// The keys `--secret KEY=…` and `--generate KEY` mark secret.
fn secret_keys(secrets: &[String], generate: &[String]) -> Vec<String> {
    secrets
        .iter()
        .filter_map(|f| f.split_once('=').map(|(k, _)| k.to_owned()))
        .chain(generate.iter().cloned())
        .collect()
}

/// The values generated for fields `generate` (shown once, when they are made).
fn generated(fields: &[(String, Option<String>)], generate: &[String]) -> BTreeMap<String, String> {
    fields.iter().filter(|(k, _)| generate.contains(k)).filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect()
}

/// The generated values, one line each, for the human output.
fn show_generated(made: &BTreeMap<String, String>) -> String {
    made.iter().map(|(k, v)| format!("\n  {k} (generated): {v}")).collect()
}

/// Conflicts as JSON; the values of secret fields hidden (like the human output) unless
/// `show`.
pub(crate) fn conflicts_json(c: &[ConflictView], show: bool) -> Value {
    let hide = |v: &Option<String>, m: bool| match v {
        Some(_) if m => Value::from(MASK),
        Some(v) => Value::from(v.as_str()),
        None => Value::Null,
    };
    Value::Array(
        c.iter()
            .map(|cv| {
                let (c, m) = (&cv.conflict, cv.secret && !show);
                let losing: Vec<Value> = c.losing.iter().map(|v| hide(v, m)).collect();
                json!({"item": c.item, "name": c.name, "field": c.field, "kept": hide(&c.kept, m), "losing": losing})
            })
            .collect(),
    )
}

/// Local-only metadata on the replica's store.
pub(crate) trait MetaExt {
    fn store_mut_meta(&mut self, key: &str, value: &[u8]) -> anyhow::Result<()>;
}

impl MetaExt for Replica<SqliteStore> {
    fn store_mut_meta(&mut self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        use hearth_peer::vault::LogStore;
        Ok(self.store_mut().set_meta(key, value)?)
    }
}

/// "3.2 s ago", "4 min ago", "2 h ago", "3 days ago": a unix-ms time as a person reads it.
fn ago(t_ms: u64) -> String {
    let s = now_ms().saturating_sub(t_ms) as f64 / 1000.0;
    match s {
        s if s < 60.0 => format!("{s:.1} s ago"),
        s if s < 3600.0 => format!("{:.0} min ago", s / 60.0),
        s if s < 86_400.0 => format!("{:.0} h ago", s / 3600.0),
        s => format!("{:.0} days ago", s / 86_400.0),
    }
}
