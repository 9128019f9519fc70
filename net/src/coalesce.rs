//! Coalesced stream writes: one writer task per connection.
//!
//! Every request and every answer of the client protocol is its own QUIC stream, and a write to
//! a stream wakes quinn's connection driver, which tokio runs next. Written one per task, each
//! frame left in its own UDP datagram: one `sendmsg` per answer was a fifth of a leader's CPU
//! under load (docs/PERFORMANCE.md). A connection's frames go instead through its writer,
//! which lets the other ready tasks run first (answers arrive from the apply thread a batch at
//! a time, requests from many client tasks at once), then writes everything queued in one
//! go, so the driver packs the frames into as few datagrams as fit.
//!
//! The queue is a channel without a bound of its own: it holds at most one frame per open
//! stream (each stream carries one frame), so the connection's concurrent-stream limit bounds
//! it (256 bidirectional streams on a node's side; the client's `open_bi` waits at the
//! node's limit).

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::debug;

use crate::protocol::codes;

/// Most frames written in one go before the writer lets other tasks run.
const MAX_FRAMES_PER_ROUND: usize = 256;

/// One frame for a connection's writer; the stream is finished after it.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) send: quinn::SendStream,
    pub(crate) frame: bytes::Bytes,
    /// Reset the stream if the peer has not taken the frame within this long.
    pub(crate) timeout: Duration,
}

/// Starts a writer; it stops once every sender is dropped and the queue is written.
pub(crate) fn spawn_writer() -> mpsc::UnboundedSender<Outgoing> {
    let (outbox, queue) = mpsc::unbounded_channel();
    tokio::spawn(write_frames(queue));
    outbox
}

async fn write_frames(mut queue: mpsc::UnboundedReceiver<Outgoing>) {
    let mut round = Vec::new();
    while let Some(first) = queue.recv().await {
        tokio::task::yield_now().await;
        round.push(first);
        while round.len() < MAX_FRAMES_PER_ROUND {
            match queue.try_recv() {
                Ok(next) => round.push(next),
                Err(_) => break,
            }
        }
        for outgoing in round.drain(..) {
            let mut write = Box::pin(write_one(outgoing));
            // A small frame fits the stream's window and is written at once; one that must
            // wait for the peer to read goes on in its own task rather than hold the rest.
            let done =
                std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx).is_ready())).await;
            if !done {
                tokio::spawn(write);
            }
        }
    }
}

async fn write_one(
    Outgoing {
        mut send,
        frame,
        timeout,
    }: Outgoing,
) {
    match tokio::time::timeout(timeout, send.write_all(&frame)).await {
        Ok(Ok(())) => {
            let _ = send.finish();
        }
        Ok(Err(error)) => debug!(%error, "cannot write a frame"),
        Err(_) => {
            debug!("the peer did not read a frame in time; resetting its stream");
            let _ = send.reset(quinn::VarInt::from_u32(codes::UNREAD));
        }
    }
}
