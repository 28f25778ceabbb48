//! One connection: the host's (docs/protocol.md §6.3). The first connection
//! that makes a call with the right token becomes the host's; while it is
//! open, calls on any other connection are refused with UNAUTHENTICATED (call
//! by call, like the Go helper). When it closes, the next one that
//! authenticates takes its place.
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::Connected;

/// Which connection a call came on (in the request's extensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnId(pub(crate) u64);

/// The host's connection, if one is open.
#[derive(Clone, Default)]
pub(crate) struct Owner(Arc<Mutex<Option<u64>>>);

impl Owner {
    /// Claims the host's place for `id` if it is free; true if `id` holds it.
    pub(crate) fn admit(&self, id: u64) -> bool {
        let mut o = self.0.lock().unwrap();
        match *o {
            None => {
                *o = Some(id);
                true
            }
            Some(held) => held == id,
        }
    }
    fn release(&self, id: u64) {
        let mut o = self.0.lock().unwrap();
        if *o == Some(id) {
            *o = None;
        }
    }
}

pub(crate) struct ConnIo {
    inner: UnixStream,
    id: u64,
    owner: Owner,
}

static NEXT: AtomicU64 = AtomicU64::new(1);

impl ConnIo {
    pub(crate) fn new(inner: UnixStream, owner: Owner) -> ConnIo {
        ConnIo { inner, id: NEXT.fetch_add(1, Ordering::Relaxed), owner }
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        self.owner.release(self.id);
    }
}

impl Connected for ConnIo {
    type ConnectInfo = ConnId;
    fn connect_info(&self) -> ConnId {
        ConnId(self.id)
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
