//! An independent QR decoder for the tests: Debian's `zbarimg`.

use std::path::Path;
use std::process::Command;

/// What `zbarimg` reads in a PNG, as QR codes only.
///
/// Only the QR decoder runs: with every symbology on, zbar now and then also "finds" a
/// one-dimensional barcode in the QR's modules and prints its digits on a second line.
pub fn read_png(png: &Path) -> String {
    let z = Command::new("zbarimg")
        .args(["--raw", "-q", "-Sdisable", "-Sqrcode.enable"])
        .arg(png)
        .output()
        .expect("zbarimg (scripts/test installs zbar-tools)");
    assert!(z.status.success(), "zbarimg: {z:?}");
    String::from_utf8(z.stdout).expect("zbarimg prints text").trim().to_owned()
}
