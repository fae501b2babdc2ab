//! Breaking changes to the protos are caught here: every field recorded in
//! `compat/fields.txt` (message, nested ones included, field name, number, type, label; enum
//! values; each service method with its request and response types) must still exist unchanged.
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
        let mut messages: Vec<(String, &prost_types::DescriptorProto)> = file
            .message_type
            .iter()
            .map(|m| (format!("{package}.{}", m.name()), m))
            .collect();
        let mut enums: Vec<(String, &prost_types::EnumDescriptorProto)> = file
            .enum_type
            .iter()
            .map(|e| (format!("{package}.{}", e.name()), e))
            .collect();
        // Nested messages and enums too.
        let mut i = 0;
        while i < messages.len() {
            let (name, msg) = (messages[i].0.clone(), messages[i].1);
            for nested in &msg.nested_type {
                messages.push((format!("{name}.{}", nested.name()), nested));
            }
            for e in &msg.enum_type {
                enums.push((format!("{name}.{}", e.name()), e));
            }
            i += 1;
        }
        for (name, msg) in &messages {
            for field in &msg.field {
                out.insert(format!(
                    "{name} {} = {} {:?} {:?} {}",
                    field.name(),
                    field.number(),
                    field.r#type(),
                    field.label(),
                    field.type_name()
                ));
            }
        }
        for (name, e) in &enums {
            for v in &e.value {
                out.insert(format!("{name} {} = {}", v.name(), v.number()));
            }
        }
        // Services: a generated client calls each method by name with these types.
        for service in &file.service {
            for m in &service.method {
                out.insert(format!(
                    "rpc {package}.{}.{}({}{}) returns ({}{})",
                    service.name(),
                    m.name(),
                    if m.client_streaming() { "stream " } else { "" },
                    m.input_type(),
                    if m.server_streaming() { "stream " } else { "" },
                    m.output_type()
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
        "fields, enum values or methods removed, renumbered or retyped (breaking for consumers of \
         old messages and for generated clients):\n{}",
        broken.join("\n")
    );
}

/// `Signal` as it was before its stage bodies became the `body` oneof: plain fields 7 and 8.
#[derive(Clone, PartialEq, prost::Message)]
struct SignalBeforeOneof {
    #[prost(string, tag = "1")]
    clip_id: String,
    #[prost(string, tag = "2")]
    stage: String,
    #[prost(message, optional, tag = "7")]
    media: Option<clipguard_schemas::MediaInfo>,
    #[prost(message, optional, tag = "8")]
    transcript: Option<clipguard_schemas::Transcript>,
}

/// The oneof is the same bytes on the wire: a signal written before it reads the same now, and
/// one written now reads the same to a reader built before.
#[test]
fn stage_bodies_in_a_oneof_keep_the_wire_format() {
    use clipguard_schemas::signal::Body;
    use clipguard_schemas::{MediaInfo, Signal, Transcript};

    let media = MediaInfo {
        duration_s: 2.5,
        width: 64,
        height: 48,
        ..Default::default()
    };
    let old = SignalBeforeOneof {
        clip_id: "c".into(),
        stage: "media".into(),
        media: Some(media.clone()),
        transcript: None,
    };
    let now = Signal::decode(old.encode_to_vec().as_slice()).unwrap();
    assert_eq!(now.media(), Some(&media));
    assert_eq!(now.transcript(), None);
    assert_eq!(now.encode_to_vec(), old.encode_to_vec());

    let transcript = Transcript {
        clip_id: "c".into(),
        text: "hello".into(),
        ..Default::default()
    };
    let now = Signal {
        clip_id: "c".into(),
        stage: "transcribe".into(),
        body: Some(Body::Transcript(transcript.clone())),
        ..Default::default()
    };
    let old = SignalBeforeOneof::decode(now.encode_to_vec().as_slice()).unwrap();
    assert_eq!(old.transcript, Some(transcript));
    assert_eq!(old.media, None);
}
