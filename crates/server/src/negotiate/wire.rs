//! Buffered reading of SOCKS messages from the client, one decoder call per arrival of bytes.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::error::NegError;

/// Bytes read per call; also bounds what we can read past the request.
const CHUNK: usize = 4096;
/// Hard cap of buffered negotiation bytes; every decoder refuses long before this.
const MAX_BUFFERED: usize = 16 * 1024;

/// The client connection plus the bytes read but not yet decoded.
pub struct Wire<S> {
    io: S,
    buf: Vec<u8>,
    /// Bytes read so far (for Dante's "error after reading N bytes" line).
    read_total: usize,
    started: Instant,
}

impl<S: AsyncRead + Unpin> Wire<S> {
    pub fn new(io: S) -> Self {
        Wire {
            io,
            buf: Vec::with_capacity(CHUNK),
            read_total: 0,
            started: Instant::now(),
        }
    }

    pub fn io(&mut self) -> &mut S {
        &mut self.io
    }

    pub fn read_total(&self) -> usize {
        self.read_total
    }

    pub fn elapsed_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Starts counting afresh: what Dante's lines report is the SOCKS negotiation, not the
    /// PROXY header a balancer put before it.
    pub fn restart_count(&mut self) {
        self.read_total = self.buf.len();
        self.started = Instant::now();
    }

    /// Gives back the connection and the bytes read past the last message.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.io, self.buf)
    }

    async fn fill(&mut self) -> Result<(), NegError> {
        if self.buf.len() >= MAX_BUFFERED {
            return Err(NegError::Io(std::io::Error::other("request too long")));
        }
        // Into the spare capacity, which read_buf need not zero first. reserve_exact keeps the
        // capacity within MAX_BUFFERED + CHUNK, so what is read past the request stays as
        // bounded as the hand-off needs.
        self.buf.reserve_exact(CHUNK);
        let n = self
            .io
            .read_buf(&mut self.buf)
            .await
            .map_err(NegError::Io)?;
        if n == 0 {
            return Err(NegError::Eof);
        }
        self.read_total += n;
        Ok(())
    }

    /// Zeroes the spare capacity behind the buffered bytes: decoded messages (a password) are
    /// drained from the front, but their bytes stay in the allocation until overwritten.
    pub fn forget_consumed(&mut self) {
        let len = self.buf.len();
        let cap = self.buf.capacity();
        self.buf.resize(cap, 0);
        self.buf.truncate(len);
    }

    /// The first byte (the SOCKS version), without consuming it.
    pub async fn peek_byte(&mut self) -> Result<u8, NegError> {
        loop {
            if let Some(&b) = self.buf.first() {
                return Ok(b);
            }
            self.fill().await?;
        }
    }

    /// Decodes the next message, reading more bytes while the decoder asks for them.
    pub async fn next<T, E>(
        &mut self,
        decode: impl Fn(&[u8]) -> Result<Option<(T, usize)>, E>,
    ) -> Result<T, NegError>
    where
        NegError: From<E>,
    {
        loop {
            if !self.buf.is_empty() {
                if let Some((msg, used)) = decode(&self.buf)? {
                    self.buf.drain(..used);
                    return Ok(msg);
                }
            }
            self.fill().await?;
        }
    }
}
