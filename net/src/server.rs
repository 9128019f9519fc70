//! The server side of the client protocol.
//!
//! A [`crate::PeerTransport`] accepts client connections (ALPN [`crate::tls::ALPN_CLIENT`]) on
//! its endpoint. Each bidirectional stream carries one request frame; the transport validates
//! it and hands an [`IncomingRequest`] — the decoded [`ClientRequest`] and a [`Responder`] — to
//! the node through a bounded channel. The node answers through the responder, from any task.
//!
//! Requests that fail validation are answered here with [`ClientResponse::Rejected`]
//! ([`codes::MALFORMED`] or [`codes::TOO_LARGE`]); when the node's channel is full, or the
//! request's bytes would exceed what the node holds at once
//! ([`crate::PeerTransportConfig::max_client_request_bytes`], counted from the frame header
//! until the request is answered), the request is answered [`ClientResponse::Unavailable`] at
//! once rather than queued without bound.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{debug, warn};

use crate::coalesce::{self, Outgoing};
use crate::frame::{self, FrameError};
use crate::peer::Stats;
use crate::protocol::{ClientRequest, ClientResponse, codes};

/// How long a client may take to send its request frame once it opened the stream.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A validated client request and the means to answer it.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The request.
    pub request: ClientRequest,
    /// Answers the request; dropping it unanswered ends the stream without an answer, which
    /// the client treats as a failed attempt (and retries).
    pub responder: Responder,
    /// The client's address, for logs.
    pub remote: SocketAddr,
}

/// Answers one client request.
#[derive(Debug)]
pub struct Responder {
    send: quinn::SendStream,
    max_frame_bytes: usize,
    /// The request's share of [`crate::PeerTransportConfig::max_client_request_bytes`],
    /// returned when the responder goes (answered or dropped).
    _request_bytes: Option<OwnedSemaphorePermit>,
    /// The connection's writer (see [`crate::coalesce`]).
    outbox: mpsc::UnboundedSender<Outgoing>,
}

/// Why a response could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    /// The response could not be encoded.
    #[error("cannot encode the response: {0}")]
    Encode(#[from] crate::codec::CodecError),
    /// The response frame could not be written (too large, or the client went away).
    #[error("cannot write the response: {0}")]
    Frame(#[from] FrameError),
    /// The stream was already closed.
    #[error("the response stream is closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
}

impl Responder {
    /// Sends `response` and finishes the stream.
    ///
    /// The frame is handed to the connection's writer, which writes the answers that are ready
    /// together; an error writing to a client that went away is logged there, not returned.
    ///
    /// A response larger than the client frame bound cannot be sent: the client is answered
    /// [`ClientResponse::Rejected`] with [`codes::TOO_LARGE`] instead (so it does not retry a
    /// request whose answer can never fit), and the error is returned.
    pub async fn respond(self, response: &ClientResponse) -> Result<(), RespondError> {
        let bytes = response.to_bytes()?;
        match frame::frame_bytes(&bytes, self.max_frame_bytes) {
            Ok(frame) => {
                self.queue(frame);
                Ok(())
            }
            Err(error) => {
                let refusal = ClientResponse::Rejected {
                    code: codes::TOO_LARGE,
                    message: format!("the response is too large to send: {error}"),
                }
                .to_bytes()?;
                let frame = frame::frame_bytes(&refusal, self.max_frame_bytes)?;
                self.queue(frame);
                Err(error.into())
            }
        }
    }

    fn queue(self, frame: bytes::Bytes) {
        let Responder {
            send,
            outbox,
            _request_bytes,
            ..
        } = self;
        // The writer lives as long as the connection's task, which outlives every responder
        // it made; if it is gone the connection is too, and the answer has nowhere to go.
        let _ = outbox.send(Outgoing {
            send,
            frame,
            timeout: REQUEST_READ_TIMEOUT,
        });
    }
}

/// What a client connection task needs from the transport.
#[derive(Clone)]
pub(crate) struct ClientContext {
    pub(crate) requests: mpsc::Sender<IncomingRequest>,
    pub(crate) max_frame_bytes: usize,
    /// Bytes of request frames held at once (one permit per byte).
    pub(crate) request_bytes: Arc<Semaphore>,
    pub(crate) stats: Arc<Stats>,
}

/// Serves one client connection until the client closes it. Holding `conn` here keeps the
/// connection open while responses are in flight (a connection dropped right after a write can
/// lose it).
pub(crate) async fn serve_client_connection(ctx: ClientContext, conn: quinn::Connection) {
    let remote = conn.remote_address();
    debug!(%remote, "client connected");
    let outbox = coalesce::spawn_writer();
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(streams) => streams,
            Err(error) => {
                debug!(%remote, %error, "client connection ended");
                return;
            }
        };
        tokio::spawn(handle_request_stream(
            ctx.clone(),
            remote,
            send,
            recv,
            outbox.clone(),
        ));
    }
}

async fn handle_request_stream(
    ctx: ClientContext,
    remote: SocketAddr,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    outbox: mpsc::UnboundedSender<Outgoing>,
) {
    let mut responder = Responder {
        send,
        max_frame_bytes: ctx.max_frame_bytes,
        _request_bytes: None,
        outbox,
    };
    let read = tokio::time::timeout(
        REQUEST_READ_TIMEOUT,
        read_request(&ctx, &mut recv, &mut responder),
    )
    .await;
    let refusal = match read {
        Err(_) => {
            debug!(%remote, "client request not received in time");
            return;
        }
        Ok(Ok(None)) => {
            debug!(%remote, "client stream finished without a request");
            return;
        }
        Ok(Err(RequestRead::OverBudget { len })) => {
            ctx.stats
                .client_requests_shed
                .fetch_add(1, Ordering::Relaxed);
            debug!(%remote, len, "shedding a client request: request bytes budget spent");
            let _ = recv.stop(quinn::VarInt::from_u32(codes::TOO_LARGE));
            answer(
                responder,
                remote,
                ClientResponse::Unavailable(
                    "node overloaded: too many request bytes in flight".into(),
                ),
            )
            .await;
            return;
        }
        Ok(Err(RequestRead::Frame(error @ FrameError::TooLarge { .. }))) => {
            Some((codes::TOO_LARGE, error.to_string()))
        }
        Ok(Err(RequestRead::Frame(error))) => Some((codes::MALFORMED, error.to_string())),
        Ok(Ok(Some(payload))) => match ClientRequest::from_bytes(&payload) {
            Ok(request) => {
                let incoming = IncomingRequest {
                    request,
                    responder,
                    remote,
                };
                match ctx.requests.try_send(incoming) {
                    Ok(()) => return,
                    Err(mpsc::error::TrySendError::Full(incoming)) => {
                        ctx.stats
                            .client_requests_shed
                            .fetch_add(1, Ordering::Relaxed);
                        answer(
                            incoming.responder,
                            remote,
                            ClientResponse::Unavailable(
                                "node overloaded: request queue full".into(),
                            ),
                        )
                        .await;
                        return;
                    }
                    Err(mpsc::error::TrySendError::Closed(incoming)) => {
                        answer(
                            incoming.responder,
                            remote,
                            ClientResponse::Unavailable("node is shutting down".into()),
                        )
                        .await;
                        return;
                    }
                }
            }
            Err(error) => Some((codes::MALFORMED, error.to_string())),
        },
    };
    if let Some((code, message)) = refusal {
        ctx.stats.frames_rejected.fetch_add(1, Ordering::Relaxed);
        warn!(%remote, code, reason = %message, "rejecting malformed client request");
        let _ = recv.stop(quinn::VarInt::from_u32(code));
        answer(
            responder,
            remote,
            ClientResponse::Rejected { code, message },
        )
        .await;
    }
}

/// Why a request frame was not read.
enum RequestRead {
    /// The frame is bad (too large, cut short, corrupt).
    Frame(FrameError),
    /// Holding the request would exceed the bytes budget.
    OverBudget { len: u32 },
}

/// Reads one request frame, taking its size from the bytes budget (kept in `responder`)
/// before reading the payload.
async fn read_request(
    ctx: &ClientContext,
    recv: &mut quinn::RecvStream,
    responder: &mut Responder,
) -> Result<Option<bytes::Bytes>, RequestRead> {
    let Some(header) = frame::read_frame_header(recv, ctx.max_frame_bytes)
        .await
        .map_err(RequestRead::Frame)?
    else {
        return Ok(None);
    };
    let permit = ctx
        .request_bytes
        .clone()
        .try_acquire_many_owned(header.len)
        .map_err(|_| RequestRead::OverBudget { len: header.len })?;
    responder._request_bytes = Some(permit);
    let payload = frame::read_frame_payload(recv, header)
        .await
        .map_err(RequestRead::Frame)?;
    frame::read_end(recv).await.map_err(RequestRead::Frame)?;
    Ok(Some(payload))
}

async fn answer(responder: Responder, remote: SocketAddr, response: ClientResponse) {
    if let Err(error) = responder.respond(&response).await {
        debug!(%remote, %error, "cannot answer client");
    }
}
