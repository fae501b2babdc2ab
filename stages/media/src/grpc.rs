//! The media stage's synchronous call (`clipguard.v1.MediaStage/Process`), served by the
//! pipeline's one gRPC adapter ([`clipguard_pipeline::grpc::Served`]).

use clipguard_pipeline::StageError;
use clipguard_pipeline::grpc::Rpc;
use clipguard_schemas::{ClipSubmitted, MediaResult};

use crate::MediaStage;

impl Rpc for MediaStage {
    type Service = clipguard_schemas::rpc::Media;

    /// Processes one clip as the Kafka host does: bad input (undecodable media, limits) is an
    /// error signal in the result; trouble a retry may fix (the store unreachable) and bugs are
    /// an `Err`, so a caller retries instead of a clip being blocked as undecodable.
    async fn answer(&self, clip: ClipSubmitted) -> Result<MediaResult, StageError> {
        match self.try_process(&clip).await {
            Ok(result) => Ok(result),
            Err(e) if e.is_input() => Ok(crate::error_result(&clip, &e)),
            Err(e) => Err(e.into_stage_error()),
        }
    }
}
