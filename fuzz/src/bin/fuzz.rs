//! The libFuzzer driver: one binary for every target, the target named by
//! `CLIPGUARD_FUZZ_TARGET` (`scripts/fuzz.sh` sets it and the options). With
//! `CLIPGUARD_FUZZ_SEEDS=DIR` (and `CLIPGUARD_FUZZ_MEDIA=DIR` of sample clips) it writes every
//! target's seeds into DIR and exits.

#![no_main]
// `fuzz_target!` exports the entry point libFuzzer calls (an `unsafe(no_mangle)` function).
#![allow(unsafe_code)]

use std::sync::OnceLock;

fn chosen() -> &'static clipguard_fuzz::Target {
    static TARGET: OnceLock<&'static clipguard_fuzz::Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let name = std::env::var("CLIPGUARD_FUZZ_TARGET").unwrap_or_default();
        clipguard_fuzz::target(&name).unwrap_or_else(|| {
            eprintln!("CLIPGUARD_FUZZ_TARGET={name:?} is not a target; the targets:");
            for t in clipguard_fuzz::TARGETS {
                eprintln!("  {:16} {}", t.name, t.what);
            }
            std::process::exit(2)
        })
    })
}

libfuzzer_sys::fuzz_target!(
    init: {
        if let Some(dir) = std::env::var_os("CLIPGUARD_FUZZ_SEEDS") {
            let media = std::env::var_os("CLIPGUARD_FUZZ_MEDIA").map(std::path::PathBuf::from);
            match clipguard_fuzz::write_seeds(std::path::Path::new(&dir), media.as_deref()) {
                Ok(()) => std::process::exit(0),
                Err(e) => {
                    eprintln!("cannot write seeds: {e}");
                    std::process::exit(1)
                }
            }
        }
        chosen();
    },
    |data: &[u8]| {
        (chosen().run)(data);
    }
);
