//! The media stage as a gRPC service (`clipguard.v1.MediaStage/Process`).

use std::sync::Arc;

use clipguard_pipeline::grpc;
use clipguard_pipeline::metrics::StageMetrics;

use clipguard_schemas::media_stage_server::{MediaStage as MediaStageService, MediaStageServer};
use clipguard_schemas::{ClipSubmitted, MediaResult};
use tonic::{Request, Response, Status};

use crate::MediaStage;

/// Fully qualified service name, for health and reflection.
pub const SERVICE: &str = "clipguard.v1.MediaStage";

#[derive(Debug, Clone)]
pub struct MediaGrpc(pub Arc<MediaStage>, pub StageMetrics);

#[tonic::async_trait]
impl MediaStageService for MediaGrpc {
    async fn process(
        &self,
        request: Request<ClipSubmitted>,
    ) -> Result<Response<MediaResult>, Status> {
        let (stage, metrics) = (self.0.as_ref(), &self.1);
        let clip = request.into_inner();
        grpc::call(stage, metrics, stage.answer(&clip)).await
    }
}

/// The tonic service for the gRPC host.
pub fn service(stage: Arc<MediaStage>, metrics: StageMetrics) -> MediaStageServer<MediaGrpc> {
    MediaStageServer::new(MediaGrpc(stage, metrics)).max_decoding_message_size(64 * 1024 * 1024)
}
