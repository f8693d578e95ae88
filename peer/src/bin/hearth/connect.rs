//! `hearth connect`: WebRTC with no server at all. One device prints an offer as text; a
//! person carries it to the other (`--answer TEXT`), which prints a reply; pasting the reply
//! on the first opens the channel and the vault syncs. The running daemon holds the
//! connection (control requests `connect_offer`, `connect_answer`, `connect_accept`).

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use hearth_peer::node::control::{Client, Reply, Request};
use serde_json::json;

/// What `hearth connect` was asked to do.
pub(crate) enum Step {
    /// Print an offer, then read the reply and accept it.
    Offer,
    /// Answer this offer text.
    Answer(String),
    /// Accept this answer text (the second half of `--offer`, for scripts).
    Accept(String),
}

/// Runs `step` through the daemon of `home`; waits up to `wait` for the channel.
pub(crate) fn run(home: &Path, json_out: bool, step: Step, wait: Duration, png: Option<&Path>) -> anyhow::Result<()> {
    let mut daemon = Client::connect(home).ok_or_else(|| {
        anyhow!("`hearth connect` needs this device's daemon running (`hearth daemon`): it holds the connection")
    })?;
    let mut ask = |req: Request| -> anyhow::Result<(String, Option<String>)> {
        match daemon.request(&req, Duration::from_secs(60))? {
            Reply::Text { text, device } => Ok((text, device)),
            Reply::Error { message, .. } => bail!("{message}"),
            other => bail!("the daemon answered with {other:?}"),
        }
    };
    let device = match step {
        Step::Offer => {
            let (offer, _) = ask(Request::ConnectOffer)?;
            show_qr(&offer, json_out, png)?;
            if json_out {
                println!("{}", json!({ "offer": offer }));
            } else {
                eprintln!("Carry this offer to the other device and run `hearth connect --answer TEXT` there:");
                println!("{offer}");
                eprintln!("Then paste its reply here:");
            }
            std::io::stdout().flush().context("writing the offer")?;
            let answer = read_text("reply")?;
            ask(Request::ConnectAccept { answer })?.1
        }
        Step::Answer(offer) => {
            let offer = if offer == "-" { read_text("offer")? } else { offer };
            let (answer, device) = ask(Request::ConnectAnswer { offer })?;
            show_qr(&answer, json_out, png)?;
            if json_out {
                println!("{}", json!({ "answer": answer, "device": device }));
            } else {
                eprintln!("Carry this reply back to the device that made the offer and paste it there:");
                println!("{answer}");
                eprintln!("Waiting for that device (Ctrl-C leaves it to the daemon, which waits 10 minutes)…");
            }
            std::io::stdout().flush().context("writing the answer")?;
            device
        }
        Step::Accept(answer) => {
            let answer = if answer == "-" { read_text("reply")? } else { answer };
            ask(Request::ConnectAccept { answer })?.1
        }
    };
    let device = device.ok_or_else(|| anyhow!("the daemon did not name the other device"))?;
    wait_live(home, &device, wait)?;
    if json_out {
        println!("{}", json!({ "connected": device, "path": "webrtc" }));
    } else {
        eprintln!("connected to {device} through WebRTC; the vault syncs while both daemons run");
    }
    Ok(())
}

/// Reads a pasted text from stdin: lines until they make a whole text (a terminal wraps a
/// long line; a person may paste it in pieces), a blank line after some text, or EOF.
fn read_text(what: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.with_context(|| format!("reading the {what}"))?;
        let line = line.trim();
        if line.is_empty() && !text.is_empty() {
            break;
        }
        text.push_str(line);
        if hearth_peer::signal::manual::is_complete(&text) {
            break;
        }
    }
    if text.is_empty() {
        bail!("no {what} given");
    }
    Ok(text)
}

/// Waits until the daemon has a live session with `device`.
fn wait_live(home: &Path, device: &str, wait: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + wait;
    loop {
        if let Some(mut c) = Client::connect(home) {
            if let Ok(Reply::Status(s)) = c.request(&Request::Status, Duration::from_secs(10)) {
                if s.peers.iter().any(|p| p.device == device) {
                    return Ok(());
                }
            }
        }
        if Instant::now() >= until {
            bail!(
                "no channel with {device} within {} s: a direct path may be impossible between these networks \
                 (`hearth nat-check` on both); `hearth status` shows it if it opens later",
                wait.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The text as a QR code: written to `png` when asked, and drawn on a terminal's stderr (so
/// stdout keeps only the text, for scripts). Text too long for a QR code is only printed.
fn show_qr(text: &str, json_out: bool, png: Option<&Path>) -> anyhow::Result<()> {
    use hearth_peer::pairing::qr;
    if let Some(path) = png {
        let image = qr::png(text).context("the QR code")?;
        hearth_peer::home::write_private(path, &image).with_context(|| format!("writing {}", path.display()))?;
    }
    if !json_out && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        if let Ok(code) = qr::terminal(text) {
            eprintln!("{code}");
        }
    }
    Ok(())
}
