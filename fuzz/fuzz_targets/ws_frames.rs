//! Arbitrary bytes as client WebSocket frames: the decoder must never panic, must always
//! make progress on a frame it accepts, and must keep held fragments within the limit.
#![no_main]

use hearth_rendezvous::ws::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    let mut dec = Decoder::new(1024);
    let mut pos = 0;
    while let Ok(Some((n, _event))) = dec.decode(&mut buf[pos..]) {
        assert!(n > 0 && pos + n <= buf.len());
        pos += n;
    }
});
