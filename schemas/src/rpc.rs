//! Every stage service as one shape: a unary call from a request to a reply. Each generated
//! stage-service trait is implemented for whatever answers its [`Service`] ([`Unary`]), so one
//! generic adapter (the pipeline's gRPC host) serves every stage and no stage writes a service
//! by hand. The marker types keep a stage behind its own service: a stage answering
//! [`HashMatch`] cannot be mounted as [`Classify`], though both take a `MediaExtract` and
//! return a `Signal`.

use std::future::Future;

use tonic::{Request, Response, Status};

use crate::v1::*;

/// A stage service: what its one method takes and gives.
pub trait Service: Send + Sync + 'static {
    type Request: Send + 'static;
    type Reply: Send + 'static;
}

/// Answers the unary call of service `S`; it can then be mounted behind `S`'s generated server
/// and no other:
///
/// ```
/// use clipguard_schemas::hash_match_stage_server::HashMatchStageServer;
/// use clipguard_schemas::rpc::{HashMatch, Unary};
/// use clipguard_schemas::{MediaExtract, Signal};
/// use tonic::{Request, Response, Status};
///
/// struct Matcher;
/// impl Unary<HashMatch> for Matcher {
///     async fn unary(&self, _: Request<MediaExtract>) -> Result<Response<Signal>, Status> {
///         Ok(Response::new(Signal::default()))
///     }
/// }
/// let _ = tonic::service::Routes::new(HashMatchStageServer::new(Matcher));
/// ```
///
/// ```compile_fail
/// # use clipguard_schemas::classify_stage_server::ClassifyStageServer;
/// # use clipguard_schemas::rpc::{HashMatch, Unary};
/// # use clipguard_schemas::{MediaExtract, Signal};
/// # use tonic::{Request, Response, Status};
/// # struct Matcher;
/// # impl Unary<HashMatch> for Matcher {
/// #     async fn unary(&self, _: Request<MediaExtract>) -> Result<Response<Signal>, Status> {
/// #         Ok(Response::new(Signal::default()))
/// #     }
/// # }
/// // Same request and reply types, another stage's service: refused.
/// let _ = tonic::service::Routes::new(ClassifyStageServer::new(Matcher));
/// ```
pub trait Unary<S: Service>: Send + Sync + 'static {
    fn unary(
        &self,
        request: Request<S::Request>,
    ) -> impl Future<Output = Result<Response<S::Reply>, Status>> + Send;
}

/// Declares the marker of a generated stage service (`$module::$service`, one method) and
/// implements the service's trait for every [`Unary`] of it.
macro_rules! unary_service {
    ($marker:ident: $module:ident :: $service:ident, $method:ident, $req:ty => $reply:ty) => {
        #[doc = concat!("`clipguard.v1.", stringify!($service), "`.")]
        #[derive(Debug, Clone, Copy)]
        pub struct $marker;

        impl Service for $marker {
            type Request = $req;
            type Reply = $reply;
        }

        #[tonic::async_trait]
        impl<H: Unary<$marker>> $module::$service for H {
            async fn $method(&self, request: Request<$req>) -> Result<Response<$reply>, Status> {
                self.unary(request).await
            }
        }
    };
}

unary_service!(Media: media_stage_server::MediaStage, process, ClipSubmitted => MediaResult);
unary_service!(HashMatch: hash_match_stage_server::HashMatchStage, r#match, MediaExtract => Signal);
unary_service!(Transcribe: transcribe_stage_server::TranscribeStage, transcribe, MediaExtract => Signal);
unary_service!(Classify: classify_stage_server::ClassifyStage, classify, MediaExtract => Signal);
unary_service!(
    ClassifyTranscript: classify_transcript_stage_server::ClassifyTranscriptStage,
    classify,
    Transcript => Signal
);
unary_service!(Monitor: monitor_stage_server::MonitorStage, decide, DecideRequest => Verdict);
unary_service!(Release: release_stage_server::ReleaseStage, release, Verdict => ReleaseResult);
unary_service!(
    Lookup: provenance_lookup_server::ProvenanceLookup,
    lookup,
    LookupRequest => LookupResponse
);

/// `clipguard.v1.Reviews/Report`: one of the two calls of the review worker's `Reviews`.
#[derive(Debug, Clone, Copy)]
pub struct Report;

impl Service for Report {
    type Request = ReportRequest;
    type Reply = ReportReply;
}

/// `clipguard.v1.Reviews/Appeal`.
#[derive(Debug, Clone, Copy)]
pub struct Appeal;

impl Service for Appeal {
    type Request = AppealRequest;
    type Reply = AppealReply;
}

/// `Reviews` has two calls: it is served by whatever answers both.
#[tonic::async_trait]
impl<H: Unary<Report> + Unary<Appeal>> reviews_server::Reviews for H {
    async fn report(
        &self,
        request: Request<ReportRequest>,
    ) -> Result<Response<ReportReply>, Status> {
        Unary::<Report>::unary(self, request).await
    }

    async fn appeal(
        &self,
        request: Request<AppealRequest>,
    ) -> Result<Response<AppealReply>, Status> {
        Unary::<Appeal>::unary(self, request).await
    }
}
