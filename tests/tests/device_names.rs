//! Device names are vault data: a name set on one device shows on every device once they
//! sync (`devices`, `status`), and `revoke` takes a name (any case), refusing an ambiguous
//! one and suggesting a near one.

use std::time::Duration;

use hearth_e2e::device::{vault, wait_until};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

fn names(d: &hearth_e2e::device::Device) -> Vec<(String, Option<String>)> {
    let v = d.json(&["devices"]);
    let mut out: Vec<(String, Option<String>)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["device_id"].as_str().unwrap().to_owned(), x["name"].as_str().map(str::to_owned)))
        .collect();
    out.sort();
    out
}

#[test]
fn names_show_on_every_device_and_revoke_takes_one() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b", "c"]);
    let (a, b, c) = (&devs[0], &devs[1], &devs[2]);
    a.ok(&["devices", "--rename", "laptop"]);
    b.ok(&["devices", "--rename", "phone"]);
    c.ok(&["devices", "--rename", "tablet"]);
    let da = a.daemon_on_loopback(&[], &[]);
    let _db = b.daemon_on_loopback(&[], &[&da]);
    let _dc = c.daemon_on_loopback(&[], &[&da]);
    let want = {
        let mut v = vec![
            (a.id(), Some("laptop".to_owned())),
            (b.id(), Some("phone".to_owned())),
            (c.id(), Some("tablet".to_owned())),
        ];
        v.sort();
        v
    };
    for d in &devs {
        wait_until(T, "every name on every device", || names(d) == want);
    }
    // Names are not items.
    assert_eq!(a.names(), Vec::<String>::new());
    let s: Value = a.json(&["status"]);
    let peer_names: Vec<&str> = s["peers"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(peer_names.contains(&"phone") && peer_names.contains(&"tablet"), "{s}");
    assert!(a.ok(&["status"]).contains("peer    phone ("), "the human status names peers");

    // A typo is refused with a suggestion; the name in any case revokes that device.
    let o = a.run(&["revoke", "phnoe", "--yes"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("did you mean 'phone'"), "{err}");
    let r = a.json(&["revoke", "Phone", "--yes"]);
    assert_eq!((r["revoked"].as_str(), r["name"].as_str()), (Some(b.id().as_str()), Some("phone")));
    // A rename converges too; two devices with one name need their ids.
    c.ok(&["devices", "--rename", "laptop"]);
    wait_until(T, "c's new name on a", || names(a).iter().filter(|(_, n)| n.as_deref() == Some("laptop")).count() == 2);
    let o = a.run(&["revoke", "laptop", "--yes"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("2 devices are named 'laptop'"), "{err}");
    assert!(!a.run(&["devices", "--rename", ""]).status.success(), "an empty name is refused");
}
