//! Natural batching: calls that arrive while a batch is running go into the next one.
//!
//! A lone call runs at once, alone: there is no timer and no added wait. Under load, every
//! statement (and every commit) serves all the calls that queued up meanwhile, so the per-call
//! cost of a round-trip to the database (sqlx's SQLite connection thread, or PostgreSQL over
//! the network) is shared. docs/benchmarks.md section 7 has the profile that called for it.
//!
//! A batch that fails is run again call by call, so that one bad call cannot fail the others
//! and each caller gets its own error.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// At most this many calls share one batch; also the largest SQL text a batch builds.
pub const MAX_BATCH: usize = 64;

/// Calls queued beyond this make callers wait to queue (back-pressure, bounded memory).
const QUEUE: usize = 4 * MAX_BATCH;

/// What a batch does with its calls.
pub trait Batch: Send + Sync + 'static {
    type Call: Send + Sync + 'static;
    type Answer: Send + 'static;

    /// One answer per call, in order. All or nothing: an `Err` means no call took effect.
    fn run(
        &self,
        calls: &[Self::Call],
    ) -> impl Future<Output = Result<Vec<Self::Answer>, StoreError>> + Send;
}

type Reply<B> = oneshot::Sender<Result<<B as Batch>::Answer, StoreError>>;

/// The handle callers use; the batches run on a task of their own.
pub struct Batcher<B: Batch> {
    queue: mpsc::Sender<(B::Call, Reply<B>)>,
}

impl<B: Batch> std::fmt::Debug for Batcher<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("queued", &(QUEUE - self.queue.capacity()))
            .finish()
    }
}

impl<B: Batch> Batcher<B> {
    /// Starts the batch task on the current tokio runtime. It ends when the last handle drops.
    pub fn spawn(batch: B) -> Self {
        let (queue, calls) = mpsc::channel(QUEUE);
        tokio::spawn(drive(batch, calls));
        Self { queue }
    }

    pub async fn call(&self, call: B::Call) -> Result<B::Answer, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((call, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn drive<B: Batch>(batch: B, mut queue: mpsc::Receiver<(B::Call, Reply<B>)>) {
    let mut calls = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Reply<B>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some((call, reply)) = next {
            // A caller that has gone (its request was dropped) is not served: an issue or a
            // rotation nobody will receive would only spend a token.
            if !reply.is_closed() {
                calls.push(call);
                replies.push(reply);
            }
            next = if calls.len() < MAX_BATCH {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        if calls.is_empty() {
            continue;
        }
        match batch.run(&calls).await {
            Ok(answers) if answers.len() == calls.len() => {
                for (reply, answer) in replies.drain(..).zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Ok(_) => {
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(StoreError::Batch));
                }
            }
            Err(e) if calls.len() == 1 => {
                if let Some(reply) = replies.pop() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, calls = calls.len(), "batch failed; running its calls one by one");
                for (call, reply) in calls.iter().zip(replies.drain(..)) {
                    let answer = batch
                        .run(std::slice::from_ref(call))
                        .await
                        .and_then(|mut answers| answers.pop().ok_or(StoreError::Batch));
                    let _ = reply.send(answer);
                }
            }
        }
        calls.clear();
    }
}
