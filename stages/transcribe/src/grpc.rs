//! The transcribe stage's synchronous call (`clipguard.v1.TranscribeStage/Transcribe`), served
//! by the pipeline's one gRPC adapter ([`clipguard_pipeline::grpc::Served`]).

use clipguard_pipeline::StageError;
use clipguard_pipeline::grpc::Rpc;
use clipguard_schemas::{MediaExtract, Signal};

use crate::TranscribeStage;

impl Rpc for TranscribeStage {
    type Service = clipguard_schemas::rpc::Transcribe;

    async fn answer(&self, extract: MediaExtract) -> Result<Signal, StageError> {
        Ok(self.transcribe_extract(&extract).await?.signal)
    }
}
