//! Where tests find the reference data beside the clone (`../shared/conformance`): one helper
//! any crate's tests can use without pulling in the runtime (a hashing library should not build
//! a Kafka client to find its test images).

/// The reference data of `../shared/conformance/threatexchange` (`default`, or
/// `CLIPGUARD_CONFORMANCE`) when `marker` exists under it. When it does not, the test is skipped
/// with a message, or fails when `CLIPGUARD_REQUIRE_CONFORMANCE=1` (the test suite's script sets
/// it: CI has the data beside the clone, so a missing folder there is a broken run, not a skip).
pub fn conformance_dir(default: std::path::PathBuf, marker: &str) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("CLIPGUARD_CONFORMANCE")
        .map(std::path::PathBuf::from)
        .unwrap_or(default);
    if dir.join(marker).exists() {
        return Some(dir);
    }
    let msg = format!(
        "no conformance data at {} (no {marker}; set CLIPGUARD_CONFORMANCE)",
        dir.display()
    );
    if std::env::var("CLIPGUARD_REQUIRE_CONFORMANCE").as_deref() == Ok("1") {
        panic!("{msg}, and CLIPGUARD_REQUIRE_CONFORMANCE=1");
    }
    eprintln!("skipping: {msg}");
    None
}
