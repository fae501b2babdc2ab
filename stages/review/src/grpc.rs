//! `clipguard.v1.Reviews`: user reports and appeals over gRPC, served by the review worker
//! through the pipeline's one gRPC adapter (contained and counted as every stage call is).

use std::sync::Arc;

use clipguard_pipeline::StageError;
use clipguard_pipeline::metrics::StageMetrics;
use clipguard_schemas::rpc::{Appeal, Report, Unary};
use clipguard_schemas::{AppealReply, AppealRequest, ReportReply, ReportRequest};
use tonic::{Request, Response, Status};

use crate::{ReviewError, ReviewStage};

/// The review stage behind `Reviews`.
#[derive(Debug, Clone)]
pub struct ReviewsService {
    stage: Arc<ReviewStage>,
    metrics: StageMetrics,
}

impl ReviewsService {
    pub fn new(stage: Arc<ReviewStage>, metrics: StageMetrics) -> Self {
        Self { stage, metrics }
    }
}

/// A refusal as the caller's error (`not_found`, `refused`, `bad_request`), or the database's.
fn stage_error(e: ReviewError) -> StageError {
    match e {
        ReviewError::NotFound(m) => StageError::input("not_found", m),
        ReviewError::Refused(m) => StageError::input("refused", m),
        ReviewError::Config(m) => StageError::input("bad_request", m),
        e @ ReviewError::Database(_) => StageError::external("review_database", e.to_string()),
    }
}

fn check_clip_id(id: &str) -> Result<(), StageError> {
    if id.is_empty() || id.len() > 256 {
        return Err(StageError::input("bad_request", "clip_id: 1–256 bytes"));
    }
    Ok(())
}

impl Unary<Report> for ReviewsService {
    async fn unary(
        &self,
        request: Request<ReportRequest>,
    ) -> Result<Response<ReportReply>, Status> {
        let r = request.into_inner();
        let stage = self.stage.as_ref();
        clipguard_pipeline::grpc::call(stage, &self.metrics, async move {
            check_clip_id(&r.clip_id)?;
            let taken = stage
                .report(&r.clip_id, &r.reason, &r.reporter)
                .await
                .map_err(stage_error)?;
            Ok(ReportReply {
                case_id: taken.case_id,
                opened: taken.opened,
                reports: taken.reports.clamp(0, i64::from(u32::MAX)) as u32,
            })
        })
        .await
    }
}

impl Unary<Appeal> for ReviewsService {
    async fn unary(
        &self,
        request: Request<AppealRequest>,
    ) -> Result<Response<AppealReply>, Status> {
        let r = request.into_inner();
        let stage = self.stage.as_ref();
        clipguard_pipeline::grpc::call(stage, &self.metrics, async move {
            check_clip_id(&r.clip_id)?;
            let (taken, rescan) = stage
                .appeal(&r.clip_id, &r.statement, &r.appellant)
                .await
                .map_err(stage_error)?;
            Ok(AppealReply {
                case_id: taken.case_id,
                appealed_revision: taken.appealed.revision,
                rescan,
            })
        })
        .await
    }
}
