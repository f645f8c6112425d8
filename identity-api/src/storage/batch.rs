//! Natural batching: calls that arrive while a batch is running go into the next one.
//!
//! A lone call runs at once, alone: there is no timer and no added wait. Under load, every
//! statement (and every commit) serves all the calls that queued up meanwhile, so the per-call
//! cost of a round-trip to the database (sqlx's SQLite connection thread, or PostgreSQL over
//! the network) is shared.
//!
//! A batch that fails before it changed anything is run again call by call, so that one bad
//! call cannot fail the others and each caller gets its own error; unless the failure is the
//! database's (busy, unreachable), which every call would meet again: then all get it at once.
//! A batch whose commit was sent but not confirmed is never run again: running a rotation twice
//! would find its token spent and take it for reuse. Its callers learn that the outcome is
//! unknown ([`StoreError::Unconfirmed`]), as a single request's caller would.

use std::future::Future;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{mpsc, oneshot, watch};

use super::error::StoreError;

/// At most this many calls share one batch; also the largest SQL text a batch builds.
pub const MAX_BATCH: usize = 64;

/// Calls queued beyond this make callers wait to queue (back-pressure, bounded memory).
const QUEUE: usize = 4 * MAX_BATCH;

/// See [`Batch::long_idle`].
pub const LONG_IDLE: Duration = Duration::from_secs(1);

/// A batch that takes longer (a connection that stopped answering, a lock never released)
/// fails, with an unknown outcome, rather than holding every later call of its kind.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a batch failed, and whether any of it may have taken effect.
#[derive(Debug)]
pub struct Failure {
    pub error: StoreError,
    /// The commit was sent and not confirmed: it may have taken effect.
    pub unconfirmed: bool,
}

impl From<StoreError> for Failure {
    /// A failure before anything was committed.
    fn from(error: StoreError) -> Self {
        Self {
            error,
            unconfirmed: false,
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        StoreError::from(error).into()
    }
}

/// What a batch does with its calls.
pub trait Batch: Send + 'static {
    type Call: Send + Sync + 'static;
    type Answer: Send + 'static;

    /// One answer per call, in order. All or nothing: no call took effect when it fails, unless
    /// the failure says the commit is `unconfirmed`.
    fn run(
        &mut self,
        calls: &[Self::Call],
    ) -> impl Future<Output = Result<Vec<Self::Answer>, Failure>> + Send;

    /// The queue is empty: nothing is waiting for the next batch.
    fn idle(&mut self) {}

    /// The queue has been empty for [`LONG_IDLE`].
    fn long_idle(&mut self) {}

    /// `run` failed: whatever it held may be in any state.
    fn failed(&mut self) {}
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BatchLabel {
    pub kind: &'static str,
    pub outcome: &'static str,
}

/// What the batches did, by kind, for /metrics. A failed batch is otherwise visible only as
/// slowness (its calls run again one by one) or in a log line.
#[derive(Clone, Debug, Default)]
pub struct BatchMetrics {
    /// Batches by outcome: `answered`; `split` (failed, its calls run again one by one);
    /// `failed` (every call got the error: a lone call, a busy database, an unknown outcome).
    pub batches: Family<BatchLabel, Counter>,
    /// Calls taken into batches: over `batches`, the mean batch size.
    pub calls: Family<KindLabel, Counter>,
}

impl BatchMetrics {
    /// The counters of one kind of batch, made once so that a batch costs no label lookup.
    pub fn counts(&self, kind: &'static str) -> Counts {
        let batches = |outcome| {
            self.batches
                .get_or_create(&BatchLabel { kind, outcome })
                .clone()
        };
        Counts {
            answered: batches("answered"),
            split: batches("split"),
            failed: batches("failed"),
            calls: self.calls.get_or_create(&KindLabel { kind }).clone(),
        }
    }
}

/// One kind's counters of [`BatchMetrics`] (shared with it: a clone counts into the same).
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub answered: Counter,
    pub split: Counter,
    pub failed: Counter,
    pub calls: Counter,
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
    /// Starts the batch task on the current tokio runtime, counting into `counts`. It ends when
    /// the last handle drops, or at [`Batcher::stop`].
    pub fn spawn(batch: B, counts: Counts) -> Self {
        let (queue, calls) = mpsc::channel(QUEUE);
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(drive(batch, calls, stopped, counts));
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
    counts: Counts,
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
        counts.calls.inc_by(calls.len() as u64);
        match run(&mut batch, &calls).await {
            Ok(answers) if answers.len() == calls.len() => {
                counts.answered.inc();
                for (reply, answer) in replies.drain(..).zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Ok(_) => {
                counts.failed.inc();
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(StoreError::Batch));
                }
            }
            Err(failure) if calls.len() == 1 => {
                counts.failed.inc();
                batch.failed();
                if let Some(reply) = replies.pop() {
                    let _ = reply.send(Err(failure.error));
                }
            }
            Err(Failure { error, unconfirmed }) => {
                batch.failed();
                if unconfirmed || error.is_transient() {
                    counts.failed.inc();
                    tracing::warn!(%error, unconfirmed, calls = calls.len(), "database batch failed");
                    for reply in replies.drain(..) {
                        let _ = reply.send(Err(if unconfirmed {
                            StoreError::Unconfirmed
                        } else {
                            StoreError::Busy
                        }));
                    }
                } else {
                    counts.split.inc();
                    tracing::debug!(%error, calls = calls.len(), "batch failed; running its calls one by one");
                    for (call, reply) in calls.iter().zip(replies.drain(..)) {
                        if reply.is_closed() {
                            continue;
                        }
                        let answer = run(&mut batch, std::slice::from_ref(call)).await;
                        if answer.is_err() {
                            batch.failed();
                        }
                        let answer = answer
                            .map_err(|f| f.error)
                            .and_then(|mut a| a.pop().ok_or(StoreError::Batch));
                        let _ = reply.send(answer);
                    }
                }
            }
        }
        calls.clear();
    }
}

/// [`Batch::run`] within [`RUN_TIMEOUT`].
async fn run<B: Batch>(batch: &mut B, calls: &[B::Call]) -> Result<Vec<B::Answer>, Failure> {
    tokio::time::timeout(RUN_TIMEOUT, batch.run(calls))
        .await
        .unwrap_or(Err(Failure {
            error: StoreError::TimedOut,
            unconfirmed: true,
        }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Semaphore;

    use super::*;

    /// Doubles its calls; batches of more than one fail as `fail` says. Each run waits for a
    /// permit of `gate`, so that a test can queue calls behind a running batch.
    struct Fake {
        fail: fn() -> Failure,
        runs: Arc<AtomicUsize>,
        gate: Arc<Semaphore>,
    }

    impl Batch for Fake {
        type Call = u32;
        type Answer = u32;

        async fn run(&mut self, calls: &[u32]) -> Result<Vec<u32>, Failure> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            if let Ok(permit) = self.gate.acquire().await {
                permit.forget();
            }
            if calls.len() > 1 {
                return Err((self.fail)());
            }
            Ok(calls.iter().map(|c| c * 2).collect())
        }
    }

    /// Runs call 0 alone (held at the gate), queues calls 1..=3 behind it (call 2's caller
    /// gives up before they run), then opens the gate. Returns the answers of calls 1 and 3,
    /// how many times `run` ran, and the counts of batches: answered, split, failed, calls.
    async fn one_failed_batch(
        fail: fn() -> Failure,
    ) -> (Vec<Result<u32, StoreError>>, usize, [u64; 4]) {
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let counts = Counts::default();
        let batcher = Arc::new(Batcher::spawn(
            Fake {
                fail,
                runs: runs.clone(),
                gate: gate.clone(),
            },
            counts.clone(),
        ));
        let call = |n: u32| {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.call(n).await })
        };
        let first = call(0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (one, two, three) = (call(1), call(2), call(3));
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.add_permits(1);
        assert_eq!(first.await.unwrap().unwrap(), 0);
        // Call 2's caller gives up while its batch runs (held at the gate).
        tokio::time::sleep(Duration::from_millis(50)).await;
        two.abort();
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.add_permits(10);
        let answers = vec![one.await.unwrap(), three.await.unwrap()];
        let counts = [
            &counts.answered,
            &counts.split,
            &counts.failed,
            &counts.calls,
        ]
        .map(|c| c.get());
        (answers, runs.load(Ordering::SeqCst), counts)
    }

    #[tokio::test]
    async fn a_failed_batch_runs_again_call_by_call_for_the_callers_still_there() {
        let (answers, runs, counts) =
            one_failed_batch(|| StoreError::Db(sqlx::Error::RowNotFound).into()).await;
        assert!(matches!(answers[..], [Ok(2), Ok(6)]), "{answers:?}");
        // The first batch, the failed batch of three, then calls 1 and 3 (not 2: gone).
        assert_eq!(runs, 4);
        // Reruns are not batches of their own: one answered (call 0), one split of three.
        assert_eq!(counts, [1, 1, 0, 4]);
    }

    #[tokio::test]
    async fn a_busy_database_fails_the_whole_batch_once() {
        let (answers, runs, counts) =
            one_failed_batch(|| StoreError::Db(sqlx::Error::PoolTimedOut).into()).await;
        assert!(
            matches!(answers[..], [Err(StoreError::Busy), Err(StoreError::Busy)]),
            "{answers:?}"
        );
        assert_eq!(runs, 2);
        assert_eq!(counts, [1, 0, 1, 4]);
    }

    #[tokio::test]
    async fn an_unconfirmed_commit_is_never_run_again() {
        let (answers, runs, counts) = one_failed_batch(|| Failure {
            error: StoreError::Db(sqlx::Error::WorkerCrashed),
            unconfirmed: true,
        })
        .await;
        assert!(
            matches!(
                answers[..],
                [Err(StoreError::Unconfirmed), Err(StoreError::Unconfirmed)]
            ),
            "{answers:?}"
        );
        assert_eq!(runs, 2);
        assert_eq!(counts, [1, 0, 1, 4]);
    }
}
