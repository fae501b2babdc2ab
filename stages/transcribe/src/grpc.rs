//! The transcribe stage as a gRPC service (`clipguard.v1.TranscribeStage/Transcribe`).

use std::sync::Arc;

use clipguard_pipeline::grpc;
use clipguard_pipeline::metrics::StageMetrics;

use clipguard_schemas::transcribe_stage_server::{
    TranscribeStage as TranscribeService, TranscribeStageServer,
};
use clipguard_schemas::{MediaExtract, Signal};
use tonic::{Request, Response, Status};

use crate::TranscribeStage;

/// Fully qualified service name, for health and reflection.
pub const SERVICE: &str = "clipguard.v1.TranscribeStage";

#[derive(Debug, Clone)]
pub struct TranscribeGrpc(pub Arc<TranscribeStage>, pub StageMetrics);

#[tonic::async_trait]
impl TranscribeService for TranscribeGrpc {
    async fn transcribe(&self, request: Request<MediaExtract>) -> Result<Response<Signal>, Status> {
        let (stage, metrics) = (self.0.as_ref(), &self.1);
        let extract = request.into_inner();
        grpc::call(stage, metrics, async {
            Ok(stage.transcribe_extract(&extract).await?.signal)
        })
        .await
    }
}

/// The tonic service for the gRPC host.
pub fn service(
    stage: Arc<TranscribeStage>,
    metrics: StageMetrics,
) -> TranscribeStageServer<TranscribeGrpc> {
    TranscribeStageServer::new(TranscribeGrpc(stage, metrics))
}
