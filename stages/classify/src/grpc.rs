//! The classify stages as gRPC services (`clipguard.v1.ClassifyStage/Classify`,
//! `clipguard.v1.ClassifyTranscriptStage/Classify`).

use std::sync::Arc;

use clipguard_pipeline::grpc;
use clipguard_pipeline::metrics::StageMetrics;

use clipguard_schemas::classify_stage_server::{
    ClassifyStage as ClassifyService, ClassifyStageServer,
};
use clipguard_schemas::classify_transcript_stage_server::{
    ClassifyTranscriptStage as TranscriptService, ClassifyTranscriptStageServer,
};
use clipguard_schemas::{MediaExtract, Signal, Transcript};
use tonic::{Request, Response, Status};

use crate::stage::{ClassifyStage, ClassifyTranscriptStage};

/// Fully qualified service name, for health and reflection.
pub const SERVICE: &str = "clipguard.v1.ClassifyStage";
pub const TRANSCRIPT_SERVICE: &str = "clipguard.v1.ClassifyTranscriptStage";

#[derive(Debug, Clone)]
pub struct ClassifyGrpc(pub Arc<ClassifyStage>, pub StageMetrics);

#[tonic::async_trait]
impl ClassifyService for ClassifyGrpc {
    async fn classify(&self, request: Request<MediaExtract>) -> Result<Response<Signal>, Status> {
        let (stage, metrics) = (self.0.as_ref(), &self.1);
        let extract = request.into_inner();
        grpc::call(stage, metrics, stage.classify_extract(&extract)).await
    }
}

/// The tonic service for the gRPC host.
pub fn service(
    stage: Arc<ClassifyStage>,
    metrics: StageMetrics,
) -> ClassifyStageServer<ClassifyGrpc> {
    ClassifyStageServer::new(ClassifyGrpc(stage, metrics))
}

#[derive(Debug, Clone)]
pub struct ClassifyTranscriptGrpc(pub Arc<ClassifyTranscriptStage>, pub StageMetrics);

#[tonic::async_trait]
impl TranscriptService for ClassifyTranscriptGrpc {
    async fn classify(&self, request: Request<Transcript>) -> Result<Response<Signal>, Status> {
        let (stage, metrics) = (self.0.as_ref(), &self.1);
        let transcript = request.into_inner();
        grpc::call(stage, metrics, stage.classify_transcript(&transcript)).await
    }
}

pub fn transcript_service(
    stage: Arc<ClassifyTranscriptStage>,
    metrics: StageMetrics,
) -> ClassifyTranscriptStageServer<ClassifyTranscriptGrpc> {
    ClassifyTranscriptStageServer::new(ClassifyTranscriptGrpc(stage, metrics))
}
