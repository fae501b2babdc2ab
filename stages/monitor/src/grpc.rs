//! The monitor as a gRPC service (`clipguard.v1.MonitorStage/Decide`): a pure decision over
//! the signals a caller supplies (re-scans, debugging).

use std::sync::Arc;

use clipguard_schemas::monitor_stage_server::{MonitorStage as MonitorService, MonitorStageServer};
use clipguard_schemas::{DecideRequest, Verdict};
use tonic::{Request, Response, Status};

use crate::{MonitorStage, decide};

/// Fully qualified service name, for health and reflection.
pub const SERVICE: &str = "clipguard.v1.MonitorStage";

#[derive(Debug, Clone)]
pub struct MonitorGrpc(pub Arc<MonitorStage>);

#[tonic::async_trait]
impl MonitorService for MonitorGrpc {
    async fn decide(&self, request: Request<DecideRequest>) -> Result<Response<Verdict>, Status> {
        let r = request.into_inner();
        if r.clip_id.is_empty() {
            return Err(Status::invalid_argument("clip_id is required"));
        }
        Ok(Response::new(decide::decide(
            &r.clip_id,
            &r.signals,
            self.0.config(),
            r.deadline_passed,
        )))
    }
}

pub fn service(stage: Arc<MonitorStage>) -> MonitorStageServer<MonitorGrpc> {
    MonitorStageServer::new(MonitorGrpc(stage))
}
