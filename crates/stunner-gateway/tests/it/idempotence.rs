//! Rendering is a function: the same World renders the same output, and feeding the
//! rendered statuses back (as the API server would store them) changes nothing but the
//! clock, which must not move a condition's lastTransitionTime.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use stunner_gateway::{RenderOptions, World, render};

use crate::golden::{case_input, case_options, cases};

fn apply_statuses(world: &mut World, d: &stunner_gateway::Desired) {
    for s in &d.statuses {
        let key = (s.target.namespace.clone(), s.target.name.clone());
        match s.target.kind.as_str() {
            "GatewayClass" => {
                let o = std::sync::Arc::make_mut(world.gateway_classes.get_mut(&key).unwrap());
                o.status = Some(serde_json::from_value(s.status.clone()).unwrap());
            }
            "Gateway" => {
                let o = std::sync::Arc::make_mut(world.gateways.get_mut(&key).unwrap());
                o.status = Some(serde_json::from_value(s.status.clone()).unwrap());
            }
            "UDPRoute" if s.target.api_version.starts_with("stunner") => {
                let o = std::sync::Arc::make_mut(world.udp_routes.get_mut(&key).unwrap());
                o.status = Some(serde_json::from_value(s.status.clone()).unwrap());
            }
            "UDPRoute" => {
                let o = std::sync::Arc::make_mut(world.udp_routes_v1a2.get_mut(&key).unwrap());
                o.status = Some(serde_json::from_value(s.status.clone()).unwrap());
            }
            other => panic!("unexpected status kind {other}"),
        }
    }
}

#[test]
fn rerender_with_stored_status_is_a_no_op() {
    for dir in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let mut world = World::new();
        world.load_yaml(&name, &case_input(&dir)).unwrap();
        let opts = case_options(&dir);
        let first = render(&world, &opts);
        assert!(first == render(&world, &opts), "{name}: not deterministic");
        apply_statuses(&mut world, &first);
        let later = RenderOptions {
            now: Time(k8s_openapi::jiff::Timestamp::from_second(2_000_000_000).unwrap()),
            ..opts
        };
        let second = render(&world, &later);
        assert_eq!(
            first.to_yaml().unwrap(),
            second.to_yaml().unwrap(),
            "{name}: stored status is not a fixed point"
        );
    }
}
