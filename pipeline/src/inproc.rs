//! The in-process host: runs one input through a stage directly, without a broker, with the same
//! safety nets as the Kafka host (panics caught, attempt deadline) but no retries and no
//! emitter. Used by `clipguard scan` and tests.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;

use crate::error::StageError;
use crate::stage::{NoEmitter, ProcessCtx, Stage};
use crate::trace::TraceContext;

/// Processes `input` for `clip_id` once.
pub async fn process<S: Stage>(
    stage: &S,
    clip_id: &str,
    input: S::Input,
) -> Result<S::Output, StageError> {
    let ctx = ProcessCtx {
        clip_id: clip_id.to_string(),
        attempt: 1,
        trace: TraceContext::new_root(),
        emitter: Arc::new(NoEmitter),
    };
    let fut = AssertUnwindSafe(stage.process(input, &ctx)).catch_unwind();
    match tokio::time::timeout(stage.attempt_timeout(), fut).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(StageError::internal(
            "panic",
            format!("stage {} panicked", stage.name()),
        )),
        Err(_) => Err(StageError::internal(
            "attempt_timeout",
            format!("attempt took longer than {:?}", stage.attempt_timeout()),
        )),
    }
}
