//! Every stage service as one shape: a unary call from a request to a reply ([`Unary`]). Each
//! generated service trait is implemented for whatever answers its call, so one generic adapter
//! (the pipeline's gRPC host) serves every stage and no stage writes a service by hand.

use std::future::Future;

use tonic::{Request, Response, Status};

use crate::v1::*;

/// A unary gRPC call from `Req` to `Reply`.
pub trait Unary<Req, Reply>: Send + Sync + 'static {
    fn unary(
        &self,
        request: Request<Req>,
    ) -> impl Future<Output = Result<Response<Reply>, Status>> + Send;
}

/// Implements a generated service trait (`$module::$service`, one method) for every
/// [`Unary`] of its request and reply.
macro_rules! unary_service {
    ($module:ident :: $service:ident, $method:ident, $req:ty => $reply:ty) => {
        #[tonic::async_trait]
        impl<H: Unary<$req, $reply>> $module::$service for H {
            async fn $method(&self, request: Request<$req>) -> Result<Response<$reply>, Status> {
                self.unary(request).await
            }
        }
    };
}

unary_service!(media_stage_server::MediaStage, process, ClipSubmitted => MediaResult);
unary_service!(hash_match_stage_server::HashMatchStage, r#match, MediaExtract => Signal);
unary_service!(transcribe_stage_server::TranscribeStage, transcribe, MediaExtract => Signal);
unary_service!(classify_stage_server::ClassifyStage, classify, MediaExtract => Signal);
unary_service!(
    classify_transcript_stage_server::ClassifyTranscriptStage,
    classify,
    Transcript => Signal
);
unary_service!(monitor_stage_server::MonitorStage, decide, DecideRequest => Verdict);
