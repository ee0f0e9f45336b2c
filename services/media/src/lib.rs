//! The media service: an RTP/RTCP relay that call-control drives (allocate, update, release),
//! with symmetric RTP latching for phones behind NAT, idle detection reporting dead media, and
//! G.711 tone and audio generators for ringback and music on hold.
//!
//! ```text
//! phone A ─RTP/RTCP─▶ leg A ports ─▶ Session (relay core) ─▶ leg B ports ─RTP/RTCP─▶ phone B
//!                                   ▲          │
//!   call-control ── MediaControl ───┘          └── MediaEvent::MediaIdle ──▶ call-control
//! ```
//!
//! Files: `relay/` (the sans-IO core: sessions, latching, RTP checks, port pairs), `service`
//! (one tokio task per session, the control API), `bus` (the control API over the bus:
//! [`bus::serve`] on the relay's side, [`bus::MediaClient`] on call-control's), `tone` (G.711,
//! tone and file generators), `config`, `clock`.

pub mod bus;
pub mod clock;
pub mod config;
pub mod relay;
pub mod service;
pub mod tone;

pub use bus::{MediaClient, RemoteAllocation};
pub use config::MediaConfig;
pub use service::{
    AllocateRequest, Allocation, MediaControl, MediaError, MediaEvent, MediaService, SessionStats,
    StartError, start,
};
pub use tone::{G711, Playback, ToneSpec};
