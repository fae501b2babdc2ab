//! The `clipguard.v1.Moderation` service: synchronous checks before generation. `CheckPrompt`
//! runs the text library's prompt check; `CheckInput` the [`crate::input`] check of a prompt
//! with uploaded images. Both run their CPU work off the async threads. Served by the classify
//! worker (its models), not a stage: no topic, no signal.

use clipguard_policy::Audience;
use clipguard_schemas::moderation_server::{Moderation, ModerationServer};
use clipguard_schemas::{
    CheckInputRequest, CheckInputResponse, CheckPromptRequest, CheckPromptResponse,
};
use clipguard_text::prompt::PromptChecker;
use tonic::{Request, Response, Status};

use crate::input::InputChecker;

/// Fully qualified service name, for health and reflection.
pub const SERVICE: &str = "clipguard.v1.Moderation";

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct ModerationGrpc {
    prompts: PromptChecker,
    inputs: InputChecker,
}

#[tonic::async_trait]
impl Moderation for ModerationGrpc {
    async fn check_prompt(
        &self,
        request: Request<CheckPromptRequest>,
    ) -> Result<Response<CheckPromptResponse>, Status> {
        let r = request.into_inner();
        let audience = Audience::of_request(r.audience());
        let checker = self.prompts.clone();
        // Inference is CPU work: off the async threads.
        tokio::task::spawn_blocking(move || checker.check(&r.prompt, audience))
            .await
            .map(Response::new)
            .map_err(|e| Status::from(clipguard_pipeline::error::join_error(e)))
    }

    async fn check_input(
        &self,
        request: Request<CheckInputRequest>,
    ) -> Result<Response<CheckInputResponse>, Status> {
        let r = request.into_inner();
        let audience = Audience::of_request(r.audience());
        self.inputs
            .check_consented(&r.prompt, r.images, audience, &r.consented_likeness_ids)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}

/// The service, taking requests as large as the input limits allow (tonic's default of 4 MiB
/// would refuse one phone photo).
pub fn service(prompts: PromptChecker, inputs: InputChecker) -> ModerationServer<ModerationGrpc> {
    let max = inputs.max_message_bytes();
    ModerationServer::new(ModerationGrpc { prompts, inputs }).max_decoding_message_size(max)
}
