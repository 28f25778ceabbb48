//! Shutdown (docs/protocol.md §12): whichever of Shutdown, SIGTERM, SIGINT
//! or stdin EOF comes first runs the steps once; the others wait for it.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{watch, OnceCell};
use tokio_util::sync::CancellationToken;

pub(crate) type StopFn = Box<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

pub(crate) struct Life {
    pub(crate) serving: watch::Sender<bool>,
    pub(crate) stop: StopFn,
    done: OnceCell<()>,
    /// Cancelled to end every stream and stop the server; the main task exits then.
    pub(crate) exit: CancellationToken,
    exiting: AtomicBool,
}

impl Life {
    pub(crate) fn new(serving: watch::Sender<bool>, stop: StopFn) -> Life {
        Life { serving, stop, done: OnceCell::new(), exit: CancellationToken::new(), exiting: AtomicBool::new(false) }
    }

    /// Health NOT_SERVING, no new item, final ack, the plugin's cleanup: once.
    pub(crate) async fn shutdown(&self, budget: Duration) {
        self.done
            .get_or_init(|| async {
                let _ = self.serving.send(false);
                (self.stop)(budget).await;
            })
            .await;
    }

    /// Ends our side of every stream, stops the server, removes the socket, exits 0.
    pub(crate) async fn exit(&self) {
        if !self.exiting.swap(true, Ordering::SeqCst) {
            self.exit.cancel();
        }
    }
}
