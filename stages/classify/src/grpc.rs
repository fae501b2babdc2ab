//! The classify stage as a gRPC service (`clipguard.v1.ClassifyStage/Classify`).

use std::sync::Arc;

use clipguard_schemas::classify_stage_server::{
    ClassifyStage as ClassifyService, ClassifyStageServer,
};
use clipguard_schemas::{MediaExtract, Signal};
use tonic::{Request, Response, Status};

use crate::stage::ClassifyStage;

/// Fully qualified service name, for health and reflection.
pub const SERVICE: &str = "clipguard.v1.ClassifyStage";

#[derive(Debug, Clone)]
pub struct ClassifyGrpc(pub Arc<ClassifyStage>);

#[tonic::async_trait]
impl ClassifyService for ClassifyGrpc {
    async fn classify(&self, request: Request<MediaExtract>) -> Result<Response<Signal>, Status> {
        let extract = request.into_inner();
        self.0
            .classify_extract(&extract)
            .await
            .map(Response::new)
            .map_err(|e| Status::unavailable(format!("{}: {}", e.kind, e.message)))
    }
}

/// The tonic service for the gRPC host.
pub fn service(stage: Arc<ClassifyStage>) -> ClassifyStageServer<ClassifyGrpc> {
    ClassifyStageServer::new(ClassifyGrpc(stage))
}
