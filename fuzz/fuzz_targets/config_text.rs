//! Arbitrary config text, endpoints, URIs and credentials.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stunner_config::{Endpoint, StunnerConfig, TurnUri, credential};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(mut c) = StunnerConfig::from_str_with_env(text, &|_: &str| None) {
        // A config that validated once validates again, unchanged.
        let before = c.clone();
        assert!(c.validate().is_ok());
        assert_eq!(before, c);
        let _ = c.to_json();
        let _ = c.to_string();
    }
    if let Ok(e) = text.parse::<Endpoint>() {
        assert_eq!(e.to_string().parse::<Endpoint>().ok(), Some(e));
    }
    if let Ok(u) = TurnUri::parse(text) {
        assert_eq!(TurnUri::parse(&u.render()).ok(), Some(u));
    }
    let _ = credential::check_ephemeral_username(text, 0);
});
