//! `render` and `crds` from the command line.

use std::process::Command;

fn operator(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stunner-gateway-operator"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn examples() -> String {
    format!("{}/../../examples/gateway", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn render_prints_configs_objects_and_statuses() {
    let (ok, out, err) = operator(&["render", "-f", &examples()]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
    let configs = v["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 1, "{out}");
    assert_eq!(configs[0]["admin"]["name"], "stunner/udp-gateway");
    assert_eq!(configs[0]["listeners"][0]["public_address"], "127.0.0.1");
    assert_eq!(v["deployments"][0]["metadata"]["name"], "udp-gateway");
    assert_eq!(v["services"][0]["spec"]["type"], "LoadBalancer");
    let kinds: Vec<&str> = v["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Gateway", "GatewayClass", "UDPRoute"]);
}

#[test]
fn render_legacy_mode_prints_a_config_map() {
    let (ok, out, err) = operator(&["render", "--dataplane-mode", "legacy", "-f", &examples()]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
    assert_eq!(v["configs"].as_array().unwrap().len(), 0);
    assert_eq!(v["configMaps"][0]["metadata"]["name"], "stunnerd-config");
}

#[test]
fn unknown_dataplane_mode_is_an_error() {
    let (ok, out, err) = operator(&["render", "--dataplane-mode", "manged", "-f", &examples()]);
    assert!(!ok);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown dataplane mode \"manged\""), "{err}");
}

#[test]
fn bad_manifest_is_one_clear_line() {
    let dir = crate::support::tempdir("bad-manifest");
    let f = dir.join("gw.yaml");
    std::fs::write(
        &f,
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {listeners: 3}\n",
    )
    .unwrap();
    let (ok, _, err) = operator(&["render", "-f", f.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("Gateway default/g"), "{err}");
    let (ok, _, err) = operator(&["render", "-f", "/nonexistent/file.yaml"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/file.yaml"), "{err}");
}

#[test]
fn crds_command_prints_the_checked_in_crds() {
    let (ok, out, err) = operator(&["crds"]);
    assert!(ok, "{err}");
    let want = std::fs::read_to_string(format!(
        "{}/../../deploy/crds/stunner-crds.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert!(
        out == want,
        "deploy/crds/stunner-crds.yaml differs from `stunner-gateway-operator crds`"
    );
}
