//! Why a TU command to the transaction layer was refused.

use super::io::TransactionState;

/// A refused TU command. Nothing was sent and no state changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// The key names no live transaction of this layer (it terminated, or never existed).
    #[error("no such transaction")]
    UnknownTransaction,
    /// A response was given for a client transaction, or a CANCEL asked for a server one.
    #[error("operation not valid for this side of the transaction")]
    WrongRole,
    /// The request has no top Via, or it does not parse.
    #[error("request has no usable top Via")]
    MissingVia,
    /// The top Via has no branch parameter (§8.1.1.7 requires one).
    #[error("top Via has no branch")]
    MissingBranch,
    /// CSeq is missing, malformed, or names another method than the request line.
    #[error("missing or inconsistent CSeq")]
    BadCSeq,
    /// ACK never creates a client transaction (§17.1.1.3, §13.2.2.4): send it statelessly.
    #[error("ACK is sent outside transactions")]
    AckIsNotATransaction,
    /// A client transaction with the same branch and method is live.
    #[error("a transaction with this branch already exists")]
    DuplicateTransaction,
    /// The layer holds `TransactionConfig::max_transactions` transactions already.
    #[error("transaction table full")]
    TableFull,
    /// The transaction's state does not allow this response (e.g. one after the final, a
    /// non-2xx after a 2xx, or a provisional response in Accepted).
    #[error("response not allowed in state {state:?}")]
    InvalidState {
        /// The state the transaction is in.
        state: TransactionState,
    },
    /// CANCEL asked before any provisional response: §9.1 says wait for one.
    #[error("no provisional response received yet")]
    NoProvisionalResponse,
    /// CANCEL asked for a transaction that is not INVITE or already has a final response.
    #[error("nothing to cancel")]
    NotCancellable,
}
