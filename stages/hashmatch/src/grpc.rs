//! The hashmatch stage as a gRPC service (`clipguard.v1.HashMatchStage/Match`).

use std::sync::Arc;

use clipguard_pipeline::grpc;
use clipguard_pipeline::metrics::StageMetrics;
use clipguard_schemas::hash_match_stage_server::{
    HashMatchStage as HashMatchService, HashMatchStageServer,
};
use clipguard_schemas::{MediaExtract, Signal};
use tonic::{Request, Response, Status};

use crate::stage::HashmatchStage;

/// Fully qualified service name, for health and reflection.
pub const SERVICE: &str = "clipguard.v1.HashMatchStage";

#[derive(Debug, Clone)]
pub struct HashmatchGrpc(pub Arc<HashmatchStage>, pub StageMetrics);

#[tonic::async_trait]
impl HashMatchService for HashmatchGrpc {
    async fn r#match(&self, request: Request<MediaExtract>) -> Result<Response<Signal>, Status> {
        let (stage, metrics) = (self.0.as_ref(), &self.1);
        grpc::call(
            stage,
            metrics,
            stage.match_off_executor(request.into_inner()),
        )
        .await
    }
}

/// The tonic service for the gRPC host.
pub fn service(
    stage: Arc<HashmatchStage>,
    metrics: StageMetrics,
) -> HashMatchStageServer<HashmatchGrpc> {
    HashMatchStageServer::new(HashmatchGrpc(stage, metrics))
}
