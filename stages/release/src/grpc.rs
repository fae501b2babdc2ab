//! The release stage's synchronous calls: `clipguard.v1.ReleaseStage/Release` through the
//! pipeline's one gRPC adapter (a dry run: what the stage would do with the verdict; only
//! verdicts from `clips.verdicts` make renditions or change the index), and `clipguard.v1.ProvenanceLookup/Lookup` ("was this made by
//! us?") contained and counted the same way.

use std::sync::Arc;

use clipguard_pipeline::StageError;
use clipguard_pipeline::grpc::Rpc;
use clipguard_pipeline::metrics::StageMetrics;
use clipguard_schemas::rpc::{Lookup, Unary};
use clipguard_schemas::{LookupRequest, LookupResponse, ReleaseResult, Verdict};

use crate::{ReleaseError, ReleaseStage};

impl Rpc for ReleaseStage {
    type Service = clipguard_schemas::rpc::Release;

    async fn answer(&self, verdict: Verdict) -> Result<ReleaseResult, StageError> {
        if verdict.clip_id.is_empty() {
            return Err(StageError::input("bad_request", "clip_id is required"));
        }
        Ok(self.plan(&verdict))
    }
}

/// The release stage behind `ProvenanceLookup`.
#[derive(Debug)]
pub struct Lookups {
    stage: Arc<ReleaseStage>,
    metrics: StageMetrics,
}

impl Lookups {
    pub fn new(stage: Arc<ReleaseStage>, metrics: StageMetrics) -> Self {
        Self { stage, metrics }
    }
}

impl Unary<Lookup> for Lookups {
    async fn unary(
        &self,
        request: tonic::Request<LookupRequest>,
    ) -> Result<tonic::Response<LookupResponse>, tonic::Status> {
        let stage = self.stage.as_ref();
        let media = request.into_inner().media.unwrap_or_default();
        clipguard_pipeline::grpc::call(stage, &self.metrics, async move {
            if media.location.is_none() {
                return Err(StageError::input("bad_request", "media is required"));
            }
            stage.lookup(&media).await.map_err(|e| match e {
                e @ ReleaseError::Config(_) => StageError::input("index_off", e.to_string()),
                e => e.into_stage_error(),
            })
        })
        .await
    }
}
