//! Why sync could not do something ([`Error`]), with the causes kept as sources, and how an
//! error is said on one line ([`one_line`]). Only types and wording; nothing here acts.

use std::time::Duration;

/// Why sync could not do something.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Upstream answered with an error status.
    #[error("upstream answered {code}: {message}")]
    Status {
        /// HTTP status code.
        code: u16,
        /// Upstream's message.
        message: String,
    },
    /// A request to upstream failed (connection, TLS, credentials), or its answer broke off.
    #[error("{context}")]
    Upstream {
        /// What was asked, e.g. `GET /api/v1/pods?…`.
        context: String,
        /// Why it failed.
        #[source]
        source: kube::Error,
    },
    /// Upstream sent something vai cannot read.
    #[error("{what}")]
    Unreadable {
        /// What it was, and what is wrong with it when there is no `source`.
        what: String,
        /// The parser's complaint, if a parser complained.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// Upstream's gzipped answer does not decompress.
    #[error("{what}: bad gzip from upstream")]
    Gzip {
        /// What it was, e.g. `GET /api/v1/pods?…`.
        what: String,
        /// The decoder's complaint.
        #[source]
        source: std::io::Error,
    },
    /// The health probe found upstream not answering while a watch was open.
    #[error("upstream stopped answering")]
    Unreachable,
    /// The spool of the events watched during a list failed (see `spool`).
    #[error("spooling watch events during a list")]
    Spool(#[source] std::io::Error),
    /// The task reading the watch during a list stopped without saying how the watch ended.
    #[error("the watch reader stopped")]
    ReaderStopped,
    /// Upstream did not answer in time.
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] vai_store::Error),
    /// Upstream is unreachable and the store holds nothing to serve; the source says why
    /// upstream could not be reached.
    #[error(
        "cannot reach the cluster and the database holds no data yet (hint: check the kubeconfig's server and the network)"
    )]
    NothingToServe(#[source] Box<Error>),
    /// A syncer made by [`Syncer::detached`](crate::Syncer::detached) has no upstream to send requests to.
    #[error("vai runs without an upstream")]
    Detached,
}

/// An error and its causes on one line, outermost first, separated by `: ` — what the logs,
/// the recorded last error of a type and the CLI say. A cause whose text its outer error
/// already includes (many of kube's errors print their source too) is not repeated; of a cause
/// that spans lines (a YAML excerpt), its first line is kept, which says what and where.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(error);
    while let Some(e) = cause {
        let text = e.to_string();
        let text = text.lines().next().unwrap_or_default().trim_end();
        if !text.is_empty() && !line.contains(text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(text);
        }
        cause = e.source();
    }
    line
}
