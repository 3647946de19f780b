//! Work that arrives together, applied together: callers hand a job to a
//! [`Batcher`] and await its result; one worker takes whatever has queued
//! while its previous batch ran (at most `max`) and applies it in one go.
//! Nothing waits to fill a batch: a lone job goes at once, and jobs share a
//! batch only when they arrive while the worker is busy, or in one burst.
//!
//! A message consumer uses it to put the deliveries it holds at once (up
//! to its prefetch) in one transaction: one commit for the batch instead
//! of one per message, each message acked after that commit (issue 15).
//! The apply function decides what a failed batch means for each job
//! (typically: apply them one by one).
//!
//! Each job carries the span it was submitted in, so the apply function
//! can run each job's work in its caller's trace.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

/// One queued job, the span it was submitted in, and who waits.
type Queued<J, R> = (J, tracing::Span, oneshot::Sender<R>);

/// Hands jobs `J` to a worker that applies them in batches, each job
/// answered with its `R`.
pub struct Batcher<J, R> {
    jobs: mpsc::Sender<Queued<J, R>>,
}

impl<J, R> Clone for Batcher<J, R> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<J: Send + 'static, R: Send + 'static> Batcher<J, R> {
    /// Spawns the worker: `apply` gets each batch (at least one job, at
    /// most `max`, in arrival order, each with its span) and returns one
    /// result per job, in the same order. The worker ends when the last
    /// clone of the batcher is dropped.
    pub fn spawn<F, Fut>(max: usize, apply: F) -> Self
    where
        F: Fn(Vec<(J, tracing::Span)>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let max = max.max(1);
        let (jobs, queue) = mpsc::channel(max * 4);
        tokio::spawn(work(queue, max, apply));
        Self { jobs }
    }

    /// Queues `job` for the next batch and waits for its result; `Err`
    /// hands the job back when the worker is gone (or dropped it
    /// unanswered), for the caller to apply on its own.
    pub async fn submit(&self, job: J) -> Result<R, Gone<J>> {
        let (done, result) = oneshot::channel();
        match self.jobs.send((job, tracing::Span::current(), done)).await {
            Ok(()) => result.await.map_err(|_| Gone(None)),
            Err(mpsc::error::SendError((job, _, _))) => Err(Gone(Some(job))),
        }
    }
}

/// The worker is gone: the job back if it was never taken (`None` if it
/// was taken and not answered, e.g. its batch panicked).
#[derive(Debug)]
pub struct Gone<J>(pub Option<J>);

/// The worker: one batch at a time.
async fn work<J, R, F, Fut>(mut queue: mpsc::Receiver<Queued<J, R>>, max: usize, apply: F)
where
    F: Fn(Vec<(J, tracing::Span)>) -> Fut,
    Fut: Future<Output = Vec<R>>,
{
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        // The jobs of one burst are submitted by tasks woken together:
        // let them queue before taking what is there.
        tokio::task::yield_now().await;
        while batch.len() < max {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (jobs, waiting): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|(job, span, done)| ((job, span), done))
            .unzip();
        let results = apply(jobs).await;
        for (done, result) in waiting.into_iter().zip(results) {
            let _ = done.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn jobs_submitted_together_share_a_batch_and_each_gets_its_own_result() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Batcher::spawn(8, move |jobs: Vec<(u32, tracing::Span)>| {
            seen.lock().unwrap().push(jobs.len());
            async move { jobs.into_iter().map(|(n, _)| n * 10).collect::<Vec<_>>() }
        });
        let results = futures::future::join_all((1..=5).map(|n| batcher.submit(n))).await;
        let results: Vec<u32> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(results, [10, 20, 30, 40, 50]);
        assert_eq!(*sizes.lock().unwrap(), [5]);
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_max_jobs_and_a_lone_job_goes_alone() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Batcher::spawn(2, move |jobs: Vec<(u32, tracing::Span)>| {
            seen.lock().unwrap().push(jobs.len());
            async move { jobs.into_iter().map(|(n, _)| n).collect::<Vec<_>>() }
        });
        futures::future::join_all((0..5).map(|n| batcher.submit(n))).await;
        assert_eq!(*sizes.lock().unwrap(), [2, 2, 1]);
        assert_eq!(batcher.submit(7).await.unwrap(), 7);
        assert_eq!(sizes.lock().unwrap().last(), Some(&1));
    }
}
