//! The monitor as a gRPC service (`clipguard.v1.MonitorStage/Decide`): a pure decision over
//! the signals a caller supplies (re-scans, debugging).

use std::sync::Arc;

use clipguard_pipeline::grpc;
use clipguard_pipeline::metrics::StageMetrics;

use clipguard_schemas::monitor_stage_server::{MonitorStage as MonitorService, MonitorStageServer};
use clipguard_schemas::{DecideRequest, Verdict};
use tonic::{Request, Response, Status};

use crate::MonitorStage;

/// Fully qualified service name, for health and reflection.
pub const SERVICE: &str = "clipguard.v1.MonitorStage";

#[derive(Debug, Clone)]
pub struct MonitorGrpc(pub Arc<MonitorStage>, pub StageMetrics);

#[tonic::async_trait]
impl MonitorService for MonitorGrpc {
    async fn decide(&self, request: Request<DecideRequest>) -> Result<Response<Verdict>, Status> {
        let r = request.into_inner();
        if r.clip_id.is_empty() {
            return Err(Status::invalid_argument("clip_id is required"));
        }
        let deadline = std::time::Instant::now()
            + std::time::Duration::from_secs_f64(self.0.config().timeout_s);
        let (stage, metrics) = (self.0.as_ref(), &self.1);
        grpc::call(stage, metrics, async {
            let (verdict, _shadow) = stage
                .decide(&r.clip_id, &r.signals, r.deadline_passed, deadline)
                .await;
            Ok(verdict)
        })
        .await
    }
}

pub fn service(stage: Arc<MonitorStage>, metrics: StageMetrics) -> MonitorStageServer<MonitorGrpc> {
    MonitorStageServer::new(MonitorGrpc(stage, metrics))
}
