//! Breaking changes to the protos are caught here: every field recorded in
//! `compat/fields.txt` (message, field name, number, type, label) must still exist unchanged.
//! New fields and messages are fine. After an intended, compatible addition, refresh the file
//! with `CLIPGUARD_UPDATE_PROTO_BASELINE=1 cargo test -p clipguard-schemas --test compat`.

// Tests and benchmarks report failure by panicking.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use prost::Message;
use prost_types::FileDescriptorSet;

fn current_fields() -> BTreeSet<String> {
    let set = FileDescriptorSet::decode(clipguard_schemas::v1::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    let mut out = BTreeSet::new();
    for file in &set.file {
        let package = file.package();
        for msg in &file.message_type {
            for field in &msg.field {
                out.insert(format!(
                    "{package}.{} {} = {} {:?} {:?} {}",
                    msg.name(),
                    field.name(),
                    field.number(),
                    field.r#type(),
                    field.label(),
                    field.type_name()
                ));
            }
        }
        for e in &file.enum_type {
            for v in &e.value {
                out.insert(format!(
                    "{package}.{} {} = {}",
                    e.name(),
                    v.name(),
                    v.number()
                ));
            }
        }
    }
    out
}

#[test]
fn proto_changes_are_backward_compatible() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/fields.txt");
    let current = current_fields();
    let render = |set: &BTreeSet<String>| set.iter().map(|l| format!("{l}\n")).collect::<String>();
    if std::env::var_os("CLIPGUARD_UPDATE_PROTO_BASELINE").is_some() {
        std::fs::write(&path, render(&current)).expect("write baseline");
        return;
    }
    let baseline =
        std::fs::read_to_string(&path).expect("compat/fields.txt missing; see the module docs");
    let broken: Vec<&str> = baseline
        .lines()
        .filter(|l| !l.is_empty() && !current.contains(*l))
        .collect();
    assert!(
        broken.is_empty(),
        "fields removed, renumbered or retyped (breaking for consumers of old messages):\n{}",
        broken.join("\n")
    );
}
