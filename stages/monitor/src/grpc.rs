//! The monitor's synchronous call (`clipguard.v1.MonitorStage/Decide`): a pure decision over
//! the signals a caller supplies (re-scans, debugging), served by the pipeline's one gRPC
//! adapter ([`clipguard_pipeline::grpc::Served`]).

use clipguard_pipeline::StageError;
use clipguard_pipeline::error::kind;
use clipguard_pipeline::grpc::Rpc;
use clipguard_schemas::{DecideRequest, Verdict};

use crate::MonitorStage;

impl Rpc for MonitorStage {
    type Service = clipguard_schemas::rpc::Monitor;

    async fn answer(&self, r: DecideRequest) -> Result<Verdict, StageError> {
        if r.clip_id.is_empty() {
            return Err(StageError::input(kind::BAD_REQUEST, "clip_id is required"));
        }
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_secs_f64(self.config().timeout_s);
        let (verdict, _shadow) = self
            .decide(&r.clip_id, &r.signals, r.deadline_passed, deadline)
            .await;
        Ok(verdict)
    }
}
