//! The hashmatch stage's synchronous call (`clipguard.v1.HashMatchStage/Match`), served by the
//! pipeline's one gRPC adapter ([`clipguard_pipeline::grpc::Served`]).

use clipguard_pipeline::StageError;
use clipguard_pipeline::grpc::Rpc;
use clipguard_schemas::{MediaExtract, Signal};

use crate::stage::HashmatchStage;

impl Rpc for HashmatchStage {
    type Service = clipguard_schemas::rpc::HashMatch;

    async fn answer(&self, extract: MediaExtract) -> Result<Signal, StageError> {
        self.match_off_executor(extract).await
    }
}
