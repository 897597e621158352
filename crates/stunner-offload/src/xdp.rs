//! Where the XDP program can relay (`bpf/xdp.h`): which interfaces get it, and why the
//! others do not. The TC program is attached everywhere regardless and takes whatever
//! XDP passes on, so a wrong guess here costs speed, never packets, with one
//! exception that decides `Auto`: XDP redirects into a veth are dropped by the kernel
//! unless the veth's other end runs NAPI (GRO on, or an XDP program of its own), and
//! that end is usually outside our network namespace (a pod's eth0). So `Auto` puts XDP
//! only on NICs, and explicit `XDP` on every interface (docs/OFFLOAD.md says what the
//! other ends then need).

/// Whether `name` is a device with a driver (a NIC, virtio included), not a virtual
/// interface (veth, bridge, tunnel): sysfs gives a NIC a `device` link. A sysfs that is
/// not this namespace's has no entry for it, which counts as virtual.
pub(crate) fn is_nic(name: &str) -> bool {
    std::path::Path::new("/sys/class/net")
        .join(name)
        .join("device")
        .exists()
}

/// Whether IPv4 or IPv6 forwarding is on for `name`: bpf_fib_lookup, which gives the
/// XDP program its next hop, refuses to look up from an interface without it.
pub(crate) fn forwarding(name: &str) -> bool {
    ["ipv4", "ipv6"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/sys/net/{f}/conf/{name}/forwarding"))
            .is_ok_and(|s| s.trim() == "1")
    })
}

/// The reason `Auto` leaves XDP off an interface, if any.
pub(crate) fn auto_skips(name: &str) -> Option<&'static str> {
    if !is_nic(name) {
        Some(
            "not attached: virtual interface (XDP redirects into a veth need NAPI on its other end)",
        )
    } else if !forwarding(name) {
        Some("not attached: forwarding off (the XDP program's route lookup needs it)")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_leaves_virtual_and_unknown_interfaces_to_tc() {
        assert!(!is_nic("lo"));
        assert!(auto_skips("lo").is_some_and(|w| w.contains("virtual interface")));
        assert!(!is_nic("no-such-if0"));
        assert!(!forwarding("no-such-if0"));
    }
}
