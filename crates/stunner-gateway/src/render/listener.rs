//! Gateway listeners: protocol, port conflicts, TLS certificates, and the rendered
//! stunnerd listener.

use std::collections::BTreeMap;

use base64::Engine as _;
use gateway_api::apis::standard::gateways::{Gateway, GatewayListeners, GatewayListenersTlsMode};
use stunner_config::{ListenerConfig, ListenerProtocol};

use crate::names;
use crate::world::World;

/// What we decided about one listener of a Gateway.
pub(crate) struct ListenerPlan<'w> {
    pub listener: &'w GatewayListeners,
    /// `None`: not a TURN protocol.
    pub protocol: Option<ListenerProtocol>,
    /// Another listener already uses this port and transport.
    pub conflicted: bool,
    /// The port stunnerd listens on (`targetport` annotation, else the listener port).
    pub port: u16,
    /// TLS/DTLS: the base64 PEM certificate and key, or why there is none.
    pub cert: Result<Option<(String, String)>, String>,
}

impl ListenerPlan<'_> {
    /// Rendered into the config and the Service.
    pub(crate) fn valid(&self) -> bool {
        self.protocol.is_some() && !self.conflicted && self.cert.is_ok()
    }

    /// `UDP` or `TCP`: the Service-port protocol.
    pub(crate) fn transport(&self) -> &'static str {
        match self.protocol {
            Some(ListenerProtocol::TurnTcp | ListenerProtocol::TurnTls) => "TCP",
            _ => "UDP",
        }
    }
}

/// Parses a JSON map annotation (`{"udp-listener": 30000}`); upstream tolerates missing
/// outer braces, so do we. Unparseable values are ignored.
pub(crate) fn port_map(annotations: &BTreeMap<String, String>, key: &str) -> BTreeMap<String, i32> {
    let Some(raw) = annotations.get(key) else {
        return BTreeMap::new();
    };
    let raw = raw.trim();
    let text = if raw.starts_with('{') {
        raw.to_string()
    } else {
        format!("{{{raw}}}")
    };
    serde_json::from_str::<BTreeMap<String, serde_json::Value>>(&text)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| {
            let p = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))?;
            (1..=65535).contains(&p).then_some((k, p as i32))
        })
        .collect()
}

/// Plans the listeners of the Gateways rendered into one config. Ports conflict within a
/// transport (UDP/DTLS vs TCP/TLS) across the whole config: in legacy mode every Gateway
/// of the class shares one stunnerd.
pub(crate) fn plan<'w>(world: &World, gws: &[&'w Gateway]) -> Vec<Vec<ListenerPlan<'w>>> {
    let mut used: BTreeMap<(&'static str, u16), ()> = BTreeMap::new();
    let mut out = Vec::new();
    for gw in gws {
        let annotations = gw.metadata.annotations.clone().unwrap_or_default();
        let targets = port_map(&annotations, names::TARGETPORT);
        let mut plans = Vec::new();
        for l in &gw.spec.listeners {
            let protocol = ListenerProtocol::parse(&l.protocol);
            let port = targets
                .get(&l.name)
                .copied()
                .unwrap_or(l.port)
                .clamp(0, 65535) as u16;
            let cert = match protocol {
                Some(ListenerProtocol::TurnTls | ListenerProtocol::TurnDtls) => {
                    certificate(world, gw, l).map(Some)
                }
                _ => Ok(None),
            };
            let mut p = ListenerPlan {
                listener: l,
                protocol,
                conflicted: false,
                port,
                cert,
            };
            if p.protocol.is_some() {
                let slot = (p.transport(), port);
                p.conflicted = used.insert(slot, ()).is_some();
            }
            plans.push(p);
        }
        out.push(plans);
    }
    out
}

/// The first resolvable certificate reference of a TLS/DTLS listener (mode Terminate or
/// unset), as base64 PEM.
fn certificate(
    world: &World,
    gw: &Gateway,
    l: &GatewayListeners,
) -> Result<(String, String), String> {
    let tls = l
        .tls
        .as_ref()
        .ok_or("TLS listener without tls.certificateRefs")?;
    if matches!(tls.mode, Some(GatewayListenersTlsMode::Passthrough)) {
        return Err("TLS mode Passthrough is not supported".into());
    }
    let gw_ns = gw.metadata.namespace.clone().unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD;
    for r in tls.certificate_refs.iter().flatten() {
        if r.group.as_deref().is_some_and(|g| !g.is_empty())
            || r.kind.as_deref().is_some_and(|k| k != "Secret")
        {
            continue;
        }
        let ns = r.namespace.clone().unwrap_or_else(|| gw_ns.clone());
        let Some(data) = super::auth::secret_data(world, &ns, &r.name) else {
            continue;
        };
        let cert = ["tls.crt", "crt", "cert"].iter().find_map(|k| data.get(*k));
        let key = ["tls.key", "key"].iter().find_map(|k| data.get(*k));
        if let (Some(c), Some(k)) = (cert, key) {
            return Ok((b64.encode(c), b64.encode(k)));
        }
    }
    Err("no valid certificate reference found (a Secret with tls.crt and tls.key)".into())
}

/// The stunnerd listener for a valid plan.
pub(crate) fn render(
    gw: &Gateway,
    p: &ListenerPlan<'_>,
    public: Option<&(String, u16)>,
    routes: Vec<String>,
) -> Option<ListenerConfig> {
    let protocol = p.protocol?;
    let (cert, key) = p.cert.clone().ok().flatten().unwrap_or_default();
    Some(ListenerConfig {
        name: format!(
            "{}/{}/{}",
            gw.metadata.namespace.as_deref().unwrap_or_default(),
            gw.metadata.name.as_deref().unwrap_or_default(),
            p.listener.name
        ),
        protocol,
        public_address: public.map(|(a, _)| a.clone()).unwrap_or_default(),
        public_port: public.map_or(0, |(_, p)| *p),
        address: "$STUNNER_ADDR".into(),
        port: p.port,
        cert,
        key,
        routes,
    })
}
