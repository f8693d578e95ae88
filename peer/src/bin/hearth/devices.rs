//! `hearth devices` (with every device's name, synced through the vault) and `hearth revoke
//! NAME|ID` (a device's name, its id, or a unique prefix of the id).

use anyhow::bail;
use hearth_peer::actions::WriteRequest;
use hearth_peer::ids::DeviceId;
use hearth_peer::reads::{DeviceRow, ReadRequest, View};
use serde_json::{json, Value};

use crate::commands::{confirm, Ctx, NotFound};

/// `hearth devices [--rename NAME]`.
pub(crate) fn list(ctx: &Ctx, rename: Option<String>) -> anyhow::Result<()> {
    if let Some(name) = rename {
        ctx.write(WriteRequest::NameDevice { name: name.clone() })?;
        // With --json only the list below is printed, as without --rename.
        if !ctx.json {
            println!("this device is now named '{}' (every device shows it once they sync)", name.trim());
        }
    }
    let rows: Vec<Value> = devices(ctx)?
        .iter()
        .map(|d| {
            json!({
                "device_id": d.device_id,
                "name": d.name,
                "this_device": d.this_device,
                "revoked": d.revoked,
                "entries": d.entries,
            })
        })
        .collect();
    ctx.print(Value::Array(rows.clone()), || {
        rows.iter()
            .map(|d| {
                format!(
                    "{}  {:<20}{}{}  {} entries",
                    d["device_id"].as_str().unwrap_or_default(),
                    d["name"].as_str().unwrap_or("(no name)"),
                    if d["this_device"] == true { "  (this device)" } else { "" },
                    if d["revoked"] == true { "  REVOKED" } else { "" },
                    d["entries"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

/// Every enrolled device (through the daemon when one runs).
fn devices(ctx: &Ctx) -> anyhow::Result<Vec<DeviceRow>> {
    match ctx.read(ReadRequest::Devices)? {
        View::Devices { devices } => Ok(devices),
        other => bail!("asked for the devices, got {other:?}"),
    }
}

/// The enrolled device `arg` names: its name (exact, any case), its id, or a unique prefix
/// of at least 4 hex characters.
fn target(ctx: &Ctx, arg: &str) -> anyhow::Result<(DeviceId, Option<String>)> {
    let rows = devices(ctx)?;
    let names: std::collections::BTreeMap<DeviceId, String> =
        rows.iter().filter_map(|d| Some((DeviceId::from_hex(&d.device_id)?, d.name.clone()?))).collect();
    let devices: Vec<DeviceId> = rows.iter().filter_map(|d| DeviceId::from_hex(&d.device_id)).collect();
    let name_of = |d: &DeviceId| names.get(d).cloned();
    if let Some(id) = DeviceId::from_hex(arg).filter(|d| devices.contains(d)) {
        return Ok((id, name_of(&id)));
    }
    let named: Vec<DeviceId> =
        devices.iter().copied().filter(|d| names.get(d).is_some_and(|n| n.eq_ignore_ascii_case(arg.trim()))).collect();
    match named.as_slice() {
        [one] => return Ok((*one, name_of(one))),
        [] => {}
        many => bail!(
            "{} devices are named '{arg}': give the id instead ({})",
            many.len(),
            many.iter().map(|d| d.to_hex()).collect::<Vec<_>>().join(", ")
        ),
    }
    let prefix = arg.to_ascii_lowercase();
    if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        let hint = hearth_peer::vault::closest(arg, names.values().map(String::as_str))
            .map(|n| format!("; did you mean '{n}'?"))
            .unwrap_or_default();
        return Err(NotFound(format!(
            "no device named '{arg}'{hint} (give a device's name, its id or at least its first 4 hex characters: see `hearth devices`)"
        ))
        .into());
    }
    let matching: Vec<DeviceId> = devices.iter().copied().filter(|d| d.to_hex().starts_with(&prefix)).collect();
    match matching.as_slice() {
        [one] => Ok((*one, name_of(one))),
        [] => {
            Err(NotFound(format!("no device of this vault is named or starts with '{prefix}' (see `hearth devices`)"))
                .into())
        }
        many => Err(NotFound(format!(
            "{} devices start with {prefix}: {}; give more characters",
            many.len(),
            many.iter().map(|d| d.to_hex()).collect::<Vec<_>>().join(", ")
        ))
        .into()),
    }
}

/// `hearth revoke NAME|ID [--yes]`.
pub(crate) fn revoke(ctx: &Ctx, arg: &str, yes: bool) -> anyhow::Result<()> {
    let (id, name) = target(ctx, arg)?;
    let who = match &name {
        Some(n) => format!("'{n}' ({id})"),
        None => format!("{id}"),
    };
    if !yes {
        confirm(&format!(
            "Revoke device {who}? Its future entries will be refused everywhere. It keeps what it \
             already synced, and the vault's 24 words still enrol a new device until you run \
             `hearth rotate`. [y/N] "
        ))?;
    }
    ctx.write(WriteRequest::Revoke { device: id })?;
    ctx.print(json!({"ok": true, "revoked": id.to_hex(), "name": name}), || {
        format!(
            "revoked {who}: its future entries will be refused once other devices sync with this one \
             (what it already synced stays readable to whoever holds it; the 24 words still enrol \
             a new device until you run `hearth rotate`, which leaves it behind)"
        )
    });
    Ok(())
}
