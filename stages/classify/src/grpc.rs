//! The classify stages' synchronous calls (`clipguard.v1.ClassifyStage/Classify`,
//! `clipguard.v1.ClassifyTranscriptStage/Classify`), served by the pipeline's one gRPC adapter
//! ([`clipguard_pipeline::grpc::Served`]).

use clipguard_pipeline::StageError;
use clipguard_pipeline::grpc::Rpc;
use clipguard_schemas::{MediaExtract, Signal, Transcript};

use crate::stage::{ClassifyStage, ClassifyTranscriptStage};

impl Rpc for ClassifyStage {
    type Service = clipguard_schemas::rpc::Classify;

    async fn answer(&self, extract: MediaExtract) -> Result<Signal, StageError> {
        self.classify_extract(&extract).await
    }
}

impl Rpc for ClassifyTranscriptStage {
    type Service = clipguard_schemas::rpc::ClassifyTranscript;

    async fn answer(&self, transcript: Transcript) -> Result<Signal, StageError> {
        self.classify_transcript(&transcript).await
    }
}
