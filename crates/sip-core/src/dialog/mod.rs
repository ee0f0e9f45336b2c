//! RFC 3261 §12 dialogs (being written).
