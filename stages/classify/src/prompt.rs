//! Input blocking over gRPC (`clipguard.v1.Moderation/CheckPrompt`): the text library's
//! prompt check ([`clipguard_text::prompt::PromptChecker`]), off the async threads.

use clipguard_policy::Audience;
use clipguard_schemas::moderation_server::{Moderation, ModerationServer};
use clipguard_schemas::{CheckPromptRequest, CheckPromptResponse};
use clipguard_text::prompt::PromptChecker;
use tonic::{Request, Response, Status};

/// Fully qualified service name, for health and reflection.
pub const SERVICE: &str = "clipguard.v1.Moderation";

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct ModerationGrpc(pub PromptChecker);

#[tonic::async_trait]
impl Moderation for ModerationGrpc {
    async fn check_prompt(
        &self,
        request: Request<CheckPromptRequest>,
    ) -> Result<Response<CheckPromptResponse>, Status> {
        let r = request.into_inner();
        let audience = Audience::of_request(r.audience());
        let checker = self.0.clone();
        // Inference is CPU work: off the async threads.
        tokio::task::spawn_blocking(move || checker.check(&r.prompt, audience))
            .await
            .map(Response::new)
            .map_err(|e| Status::from(clipguard_pipeline::error::join_error(e)))
    }
}

pub fn service(checker: PromptChecker) -> ModerationServer<ModerationGrpc> {
    ModerationServer::new(ModerationGrpc(checker))
}
