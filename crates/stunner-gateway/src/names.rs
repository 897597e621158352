//! Names, labels and annotations shared with upstream STUNner (users' manifests and
//! tooling select on them).

/// Default GatewayClass `controllerName`.
pub const DEFAULT_CONTROLLER_NAME: &str = "stunner.l7mp.io/gateway-operator";
/// Default Dataplane name.
pub const DEFAULT_DATAPLANE: &str = "default";
/// Default realm.
pub const DEFAULT_REALM: &str = "stunner.l7mp.io";
/// Default stunnerd image.
pub const DEFAULT_IMAGE: &str = "l7mp/stunnerd:latest";
/// The legacy-mode ConfigMap name and its data key.
pub const CONFIG_MAP_NAME: &str = "stunnerd-config";
/// The data key of the legacy ConfigMap.
pub const CONFIG_MAP_KEY: &str = "stunnerd.conf";
/// The `admin.name` of the legacy-mode config.
pub const LEGACY_CONFIG_NAME: &str = "stunner-daemon";
/// Name of the stunnerd container.
pub const CONTAINER_NAME: &str = "stunner-daemon";
/// Default CDS port.
pub const CDS_PORT: u16 = 13478;

/// Label marking operator-created objects.
pub const OWNED_BY_LABEL: &str = "stunner.l7mp.io/owned-by";
/// Value of [`OWNED_BY_LABEL`].
pub const OWNED_BY_VALUE: &str = "stunner";
/// Label (gateway name) and annotation (`ns/name`) tying an object to its Gateway.
pub const RELATED_GATEWAY_NAME: &str = "stunner.l7mp.io/related-gateway-name";
/// Label holding the Gateway's namespace.
pub const RELATED_GATEWAY_NAMESPACE: &str = "stunner.l7mp.io/related-gateway-namespace";
/// Label naming the Service an EndpointSlice belongs to (set by Kubernetes).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Pod label selecting the dataplane pods.
pub const APP_LABEL: &str = "app";
/// Value of [`APP_LABEL`].
pub const APP_VALUE: &str = "stunner";

/// Annotation: type of the LB Service.
pub const SERVICE_TYPE: &str = "stunner.l7mp.io/service-type";
/// Annotation: UDP and TCP ports in one Service.
pub const MIXED_PROTOCOL: &str = "stunner.l7mp.io/enable-mixed-protocol-lb";
/// Annotation: `externalTrafficPolicy: Local`.
pub const EXTERNAL_TRAFFIC_POLICY: &str = "stunner.l7mp.io/external-traffic-policy";
/// Annotation: no stunnerd Deployment for this Gateway.
pub const DISABLE_MANAGED_DATAPLANE: &str = "stunner.l7mp.io/disable-managed-dataplane";
/// Annotation: NodePort per listener (JSON map).
pub const NODEPORT: &str = "stunner.l7mp.io/nodeport";
/// Annotation: targetPort (and stunnerd port) per listener (JSON map).
pub const TARGETPORT: &str = "stunner.l7mp.io/targetport";
/// Annotation: do not expose the health-check port on the LB.
pub const DISABLE_HEALTH_CHECK_EXPOSE: &str = "stunner.l7mp.io/disable-health-check-expose";
/// Annotation: `sessionAffinity: None`.
pub const DISABLE_SESSION_AFFINITY: &str = "stunner.l7mp.io/disable-session-affinity";
/// Annotation: relay-address discovery (premium upstream; recorded, not rendered).
pub const RELAY_ADDRESS_DISCOVERY: &str = "stunner.l7mp.io/enable-relay-address-discovery";

/// Labels never copied from a Gateway to its Deployment (pruning tools select on them).
pub const DEFAULT_LABEL_FILTER: &[&str] = &[
    "applyset.kubernetes.io/part-of",
    "applyset.k8s.io/part-of",
    "app.kubernetes.io/managed-by",
    "argocd.argoproj.io/instance",
    "kustomize.toolkit.fluxcd.io/name",
    "kustomize.toolkit.fluxcd.io/namespace",
];

/// Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
