//! gRPC server reflection, both `grpc.reflection.v1` and the older `grpc.reflection.v1alpha`
//! (which Python's `grpcio-reflection` and older grpcurl builds speak), answering every file
//! request with the file and its transitive dependencies, and a lookup that finds nothing with
//! an `ErrorResponse` on the stream (as the protocol asks) instead of ending the stream.
//!
//! Why not `tonic-reflection`'s server: it answers a symbol with its file alone, so a client
//! that asks for `clipguard.v1.Moderation` gets `services.proto` without the `clip.proto` it
//! imports, and it ends the stream at the first unknown symbol.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::error::PipelineError;

/// What reflection knows: every file (encoded), what it imports, and where each symbol lives.
#[derive(Debug, Default)]
pub struct Descriptors {
    files: BTreeMap<String, (Vec<u8>, Vec<String>)>,
    symbols: BTreeMap<String, String>,
    services: Vec<String>,
}

impl Descriptors {
    /// Reads encoded `FileDescriptorSet`s (as `tonic-prost-build` writes them).
    pub fn from_sets(sets: &[&[u8]]) -> Result<Self, PipelineError> {
        let mut d = Descriptors::default();
        for set in sets {
            let set = FileDescriptorSet::decode(*set)
                .map_err(|e| PipelineError::Server(format!("reflection: descriptor set: {e}")))?;
            for file in set.file {
                d.add(file);
            }
        }
        d.services.sort();
        d.services.dedup();
        Ok(d)
    }

    fn add(&mut self, file: FileDescriptorProto) {
        let name = file.name().to_string();
        let package = file.package();
        let qualify = |n: &str| {
            if package.is_empty() {
                n.to_string()
            } else {
                format!("{package}.{n}")
            }
        };
        for service in &file.service {
            let full = qualify(service.name());
            for method in &service.method {
                self.symbols
                    .insert(format!("{full}.{}", method.name()), name.clone());
            }
            self.symbols.insert(full.clone(), name.clone());
            self.services.push(full);
        }
        fn messages(
            prefix: &str,
            list: &[DescriptorProto],
            file: &str,
            out: &mut BTreeMap<String, String>,
        ) {
            for m in list {
                let full = format!("{prefix}.{}", m.name());
                enums(&full, &m.enum_type, file, out);
                messages(&full, &m.nested_type, file, out);
                out.insert(full, file.to_string());
            }
        }
        fn enums(
            prefix: &str,
            list: &[EnumDescriptorProto],
            file: &str,
            out: &mut BTreeMap<String, String>,
        ) {
            for e in list {
                out.insert(format!("{prefix}.{}", e.name()), file.to_string());
            }
        }
        let prefix = package.to_string();
        let strip = |s: String| s.trim_start_matches('.').to_string();
        let mut found = BTreeMap::new();
        messages(&prefix, &file.message_type, &name, &mut found);
        enums(&prefix, &file.enum_type, &name, &mut found);
        self.symbols
            .extend(found.into_iter().map(|(k, v)| (strip(k), v)));
        let deps = file.dependency.clone();
        self.files.insert(name, (file.encode_to_vec(), deps));
    }

    /// Lists only these services (those the server actually serves); the others' files can
    /// still be asked for by name or symbol.
    pub fn listing(mut self, served: &[&str]) -> Self {
        self.services.retain(|s| served.contains(&s.as_str()));
        self
    }

    /// Fully qualified names of the services listed.
    pub fn services(&self) -> &[String] {
        &self.services
    }

    /// `file` and every file it imports, directly or not (the file first, each once).
    pub fn with_dependencies(&self, file: &str) -> Option<Vec<Vec<u8>>> {
        self.files.get(file)?;
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        let mut todo = vec![file.to_string()];
        while let Some(f) = todo.pop() {
            if !seen.insert(f.clone()) {
                continue;
            }
            if let Some((bytes, deps)) = self.files.get(&f) {
                order.push(bytes.clone());
                todo.extend(deps.iter().rev().cloned());
            }
        }
        Some(order)
    }

    /// The file that declares `symbol` (a service, method, message or enum), with its imports.
    pub fn containing(&self, symbol: &str) -> Option<Vec<Vec<u8>>> {
        self.with_dependencies(self.symbols.get(symbol.trim_start_matches('.'))?)
    }
}

/// One answer, in the shape both protocol versions share.
enum Answer {
    Files(Vec<Vec<u8>>),
    Services(Vec<String>),
    NoExtensions(String),
    Error(tonic::Code, String),
}

fn answer(d: &Descriptors, request: Asked) -> Answer {
    match request {
        Asked::File(name) => d
            .with_dependencies(&name)
            .map(Answer::Files)
            .unwrap_or_else(|| {
                Answer::Error(tonic::Code::NotFound, format!("file `{name}` not found"))
            }),
        Asked::Symbol(name) => d.containing(&name).map(Answer::Files).unwrap_or_else(|| {
            Answer::Error(tonic::Code::NotFound, format!("symbol `{name}` not found"))
        }),
        Asked::Extension => {
            Answer::Error(tonic::Code::NotFound, "no extensions are declared".into())
        }
        Asked::ExtensionNumbers(ty) => Answer::NoExtensions(ty),
        Asked::List => Answer::Services(d.services().to_vec()),
        Asked::Missing => Answer::Error(
            tonic::Code::InvalidArgument,
            "the request names no message_request".into(),
        ),
    }
}

enum Asked {
    File(String),
    Symbol(String),
    Extension,
    ExtensionNumbers(String),
    List,
    Missing,
}

/// Both services, sharing one [`Descriptors`].
#[derive(Debug, Clone)]
pub struct Reflection {
    descriptors: Arc<Descriptors>,
}

impl Reflection {
    pub fn new(descriptors: Descriptors) -> Self {
        Reflection {
            descriptors: Arc::new(descriptors),
        }
    }

    pub fn v1(&self) -> tonic_reflection::server::v1::ServerReflectionServer<V1> {
        tonic_reflection::server::v1::ServerReflectionServer::new(V1(self.descriptors.clone()))
    }

    pub fn v1alpha(&self) -> tonic_reflection::server::v1alpha::ServerReflectionServer<V1Alpha> {
        tonic_reflection::server::v1alpha::ServerReflectionServer::new(V1Alpha(
            self.descriptors.clone(),
        ))
    }
}

/// The same service for each protocol version (their messages are identical, their types not).
macro_rules! reflection_service {
    ($name:ident, $m:ident) => {
        /// Reflection in this protocol version.
        #[derive(Debug, Clone)]
        pub struct $name(Arc<Descriptors>);

        #[tonic::async_trait]
        impl tonic_reflection::server::$m::ServerReflection for $name {
            type ServerReflectionInfoStream = std::pin::Pin<
                Box<
                    dyn tokio_stream::Stream<
                            Item = Result<
                                tonic_reflection::pb::$m::ServerReflectionResponse,
                                Status,
                            >,
                        > + Send,
                >,
            >;

            async fn server_reflection_info(
                &self,
                request: Request<Streaming<tonic_reflection::pb::$m::ServerReflectionRequest>>,
            ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
                use pb::server_reflection_request::MessageRequest;
                use pb::server_reflection_response::MessageResponse;
                use tonic_reflection::pb::$m as pb;
                let mut requests = request.into_inner();
                let (tx, rx) = mpsc::channel(4);
                let descriptors = self.0.clone();
                tokio::spawn(async move {
                    while let Some(Ok(req)) = requests.next().await {
                        let asked = match req.message_request.clone() {
                            Some(MessageRequest::FileByFilename(f)) => Asked::File(f),
                            Some(MessageRequest::FileContainingSymbol(s)) => Asked::Symbol(s),
                            Some(MessageRequest::FileContainingExtension(_)) => Asked::Extension,
                            Some(MessageRequest::AllExtensionNumbersOfType(t)) => {
                                Asked::ExtensionNumbers(t)
                            }
                            Some(MessageRequest::ListServices(_)) => Asked::List,
                            None => Asked::Missing,
                        };
                        let response = match answer(&descriptors, asked) {
                            Answer::Files(file_descriptor_proto) => {
                                MessageResponse::FileDescriptorResponse(
                                    pb::FileDescriptorResponse {
                                        file_descriptor_proto,
                                    },
                                )
                            }
                            Answer::Services(names) => {
                                MessageResponse::ListServicesResponse(pb::ListServiceResponse {
                                    service: names
                                        .into_iter()
                                        .map(|name| pb::ServiceResponse { name })
                                        .collect(),
                                })
                            }
                            Answer::NoExtensions(base_type_name) => {
                                MessageResponse::AllExtensionNumbersResponse(
                                    pb::ExtensionNumberResponse {
                                        base_type_name,
                                        extension_number: Vec::new(),
                                    },
                                )
                            }
                            Answer::Error(code, error_message) => {
                                MessageResponse::ErrorResponse(pb::ErrorResponse {
                                    error_code: code as i32,
                                    error_message,
                                })
                            }
                        };
                        let out = pb::ServerReflectionResponse {
                            valid_host: req.host.clone(),
                            original_request: Some(req),
                            message_response: Some(response),
                        };
                        if tx.send(Ok(out)).await.is_err() {
                            return;
                        }
                    }
                });
                Ok(Response::new(Box::pin(
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                )))
            }
        }
    };
}

reflection_service!(V1, v1);
reflection_service!(V1Alpha, v1alpha);

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptors() -> Descriptors {
        Descriptors::from_sets(&[
            clipguard_schemas::v1::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ])
        .unwrap()
    }

    fn names(files: &[Vec<u8>]) -> Vec<String> {
        files
            .iter()
            .map(|f| {
                FileDescriptorProto::decode(f.as_slice())
                    .unwrap()
                    .name()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn a_service_comes_with_the_files_it_imports() {
        let d = descriptors();
        let files = d.containing("clipguard.v1.Moderation").unwrap();
        let names = names(&files);
        println!("{names:?}");
        assert!(names[0].ends_with("services.proto"), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with("clip.proto")), "{names:?}");
        let unique: BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "each file once: {names:?}");
        // A method and a message resolve too; an unknown symbol does not.
        assert!(
            d.containing("clipguard.v1.Moderation.CheckPrompt")
                .is_some()
        );
        assert!(d.containing(".clipguard.v1.Verdict").is_some());
        assert!(d.containing("clipguard.v1.NoSuchThing").is_none());
        assert!(d.services().iter().any(|s| s == "grpc.health.v1.Health"));
    }
}
