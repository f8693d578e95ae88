//! Feeds arbitrary datagrams to the STUN decoder and the binding handler: neither may panic,
//! and every response the handler writes must itself parse.
#![no_main]

use hearth_stun::binding::{BindingConfig, BindingHandler, Outcome};
use hearth_stun::message::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Message::parse(data);
    let handler = BindingHandler::new(BindingConfig { software: Some("fuzz".into()), alternate: None });
    let mut out = [0u8; hearth_stun::MAX_RESPONSE_LEN];
    let from = "192.0.2.1:5000".parse().unwrap();
    let local = "0.0.0.0:3478".parse().unwrap();
    if let Outcome::Reply { len, .. } = handler.handle(from, local, data, &mut out) {
        assert!(Message::parse(&out[..len]).is_ok());
    }
});
