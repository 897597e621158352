//! Compiles the eBPF program (C, `bpf/channeldata.bpf.c`) with clang into OUT_DIR.
//! Rust eBPF (aya-ebpf) needs a nightly toolchain and bpf-linker, which the build
//! machines cannot have; Debian's clang compiles `-target bpf` with libbpf's headers.
//! Without clang the crate still builds, and the engine reports that it has no program.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/channeldata.bpf.c";
    println!("cargo::rerun-if-changed=bpf");
    println!("cargo::rerun-if-env-changed=STUNNER_BPF_CLANG");
    println!("cargo::rustc-check-cfg=cfg(offload_unbuilt)");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("channeldata.bpf.o");
    let clang = std::env::var("STUNNER_BPF_CLANG").unwrap_or_else(|_| "clang".into());
    // The asm/ headers of the host's multiarch directory (Debian).
    let multiarch = Command::new("gcc")
        .arg("-print-multiarch")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "x86_64-linux-gnu".into());
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", src, "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            println!(
                "cargo::warning=eBPF offload not built ({clang} -target bpf failed: {other:?}); install clang and libbpf-dev (scripts/deps)"
            );
            println!("cargo::rustc-cfg=offload_unbuilt");
            let _ = std::fs::write(&out, b"");
        }
    }
}
