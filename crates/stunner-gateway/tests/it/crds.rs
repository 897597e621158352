//! The checked-in CRD manifests are generated from the Rust types.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds/stunner-crds.yaml");
    let got = stunner_gateway::crd::crds_yaml().unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        want == got,
        "deploy/crds/stunner-crds.yaml is stale: run `cargo run -p stunner-gateway-operator -- crds > deploy/crds/stunner-crds.yaml`"
    );
}

#[test]
fn checked_in_gateway_api_crds_match_the_types() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds/gateway-api-crds.yaml");
    let got = stunner_gateway::crd::gateway_api_crds_yaml().unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        want == got,
        "deploy/crds/gateway-api-crds.yaml is stale: run `cargo run -p stunner-gateway-operator -- crds --gateway-api > deploy/crds/gateway-api-crds.yaml`"
    );
}

#[test]
fn crds_have_upstream_names_scopes_and_versions() {
    let crds = stunner_gateway::crd::all_crds().unwrap();
    type Versions = Vec<(String, bool, bool)>;
    let summary: Vec<(String, String, Versions)> = crds
        .iter()
        .map(|c| {
            (
                c.metadata.name.clone().unwrap(),
                c.spec.scope.clone(),
                c.spec
                    .versions
                    .iter()
                    .map(|v| (v.name.clone(), v.served, v.storage))
                    .collect(),
            )
        })
        .collect();
    let v = |n: &str, st: bool| (n.to_string(), true, st);
    assert_eq!(
        summary,
        vec![
            (
                "dataplanes.stunner.l7mp.io".into(),
                "Cluster".into(),
                vec![v("v1", true), v("v1alpha1", false)]
            ),
            (
                "gatewayconfigs.stunner.l7mp.io".into(),
                "Namespaced".into(),
                vec![v("v1", true), v("v1alpha1", false)]
            ),
            (
                "staticservices.stunner.l7mp.io".into(),
                "Namespaced".into(),
                vec![v("v1", true), v("v1alpha1", false)]
            ),
            (
                "udproutes.stunner.l7mp.io".into(),
                "Namespaced".into(),
                vec![v("v1", true)]
            ),
        ]
    );
    let gwconf = &crds[1];
    assert_eq!(
        gwconf.spec.names.short_names,
        Some(vec!["gwconf".to_string()])
    );
    assert_eq!(
        gwconf.spec.names.categories,
        Some(vec!["stunner".to_string()])
    );
}
