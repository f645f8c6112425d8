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
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::StoreError;

/// At most this many calls share one batch; also the largest SQL text a batch builds.
pub const MAX_BATCH: usize = 64;

/// Calls queued beyond this make callers wait to queue (back-pressure, bounded memory).
const QUEUE: usize = 4 * MAX_BATCH;

/// See [`Batch::long_idle`].
pub const LONG_IDLE: Duration = Duration::from_secs(1);

/// What a batch does with its calls.
pub trait Batch: Send + 'static {
    type Call: Send + Sync + 'static;
    type Answer: Send + 'static;

    /// One answer per call, in order. All or nothing: an `Err` means no call took effect.
    fn run(
        &mut self,
        calls: &[Self::Call],
    ) -> impl Future<Output = Result<Vec<Self::Answer>, StoreError>> + Send;

    /// The queue is empty: nothing is waiting for the next batch.
    fn idle(&mut self) {}

    /// The queue has been empty for [`LONG_IDLE`].
    fn long_idle(&mut self) {}

    /// `run` failed: whatever it held may be in any state.
    fn failed(&mut self) {}
}

type Reply<B> = oneshot::Sender<Result<<B as Batch>::Answer, StoreError>>;

/// The handle callers use; the batches run on a task of their own.
pub struct Batcher<B: Batch> {
    queue: mpsc::Sender<(B::Call, Reply<B>)>,
    stop: watch::Sender<bool>,
}

impl<B: Batch> std::fmt::Debug for Batcher<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("queued", &(QUEUE - self.queue.capacity()))
            .finish()
    }
}

impl<B: Batch> Batcher<B> {
    /// Starts the batch task on the current tokio runtime. It ends when the last handle drops,
    /// or at [`Batcher::stop`].
    pub fn spawn(batch: B) -> Self {
        let (queue, calls) = mpsc::channel(QUEUE);
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(drive(batch, calls, stopped));
        Self { queue, stop }
    }

    /// Ends the task once its current batch is done, so that it lets go of its connection;
    /// calls still queued then fail with [`StoreError::Closed`].
    pub fn stop(&self) {
        self.stop.send_replace(true);
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

async fn drive<B: Batch>(
    mut batch: B,
    mut queue: mpsc::Receiver<(B::Call, Reply<B>)>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut calls = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Reply<B>> = Vec::with_capacity(MAX_BATCH);
    while !*stopped.borrow() {
        let first = match queue.try_recv() {
            Ok(call) => call,
            Err(_) => {
                batch.idle();
                let mut long_idle = std::pin::pin!(tokio::time::sleep(LONG_IDLE));
                let mut waited_long = false;
                loop {
                    tokio::select! {
                        call = queue.recv() => match call {
                            Some(call) => break call,
                            None => return,
                        },
                        _ = stopped.wait_for(|stop| *stop) => return,
                        () = &mut long_idle, if !waited_long => {
                            waited_long = true;
                            batch.long_idle();
                        }
                    }
                }
            }
        };
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
                batch.failed();
                if let Some(reply) = replies.pop() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(e) => {
                batch.failed();
                tracing::debug!(error = %e, calls = calls.len(), "batch failed; running its calls one by one");
                for (call, reply) in calls.iter().zip(replies.drain(..)) {
                    let answer = batch.run(std::slice::from_ref(call)).await;
                    if answer.is_err() {
                        batch.failed();
                    }
                    let answer = answer.and_then(|mut a| a.pop().ok_or(StoreError::Batch));
                    let _ = reply.send(answer);
                }
            }
        }
        calls.clear();
    }
}
