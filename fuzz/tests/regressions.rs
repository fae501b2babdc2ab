//! Every fuzz target on its seeds and on every input kept in `fuzz/regressions/TARGET/` (inputs
//! the fuzzer once found to crash, hang or exhaust memory, kept after the fix): each returns,
//! without a panic, within the time a worker would give it.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn every_target_survives_its_seeds_and_past_findings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let samples = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("bash")
        .arg(root.join("../scripts/make-samples.sh"))
        .arg(samples.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut report = Vec::new();
    for target in clipguard_fuzz::TARGETS {
        let mut inputs = clipguard_fuzz::seeds(target.name, Some(samples.path()));
        assert!(!inputs.is_empty(), "{}: no seeds", target.name);
        let seeds = inputs.len();
        let kept = root.join("regressions").join(target.name);
        if let Ok(entries) = std::fs::read_dir(&kept) {
            for e in entries {
                inputs.push(std::fs::read(e.unwrap().path()).unwrap());
            }
        }
        let started = Instant::now();
        for input in &inputs {
            let one = Instant::now();
            (target.run)(input);
            assert!(
                one.elapsed() < Duration::from_secs(30),
                "{}: one input took {:?}",
                target.name,
                one.elapsed()
            );
        }
        report.push(format!(
            "{:16} {seeds:3} seeds {:3} kept findings {:8.1} ms",
            target.name,
            inputs.len() - seeds,
            started.elapsed().as_secs_f64() * 1e3
        ));
    }
    println!("{}", report.join("\n"));
}
