//! `tokentop`, the operator console of tokend, as a library: state and its `update` (app),
//! key mapping (input), the admin-API task (net), rendering (ui), socket discovery (socket)
//! and the terminal's setup and restore (terminal). `main.rs` only wires them together.
//! It knows the daemon only through `tokend-shared`.

pub mod app;
pub mod format;
pub mod input;
pub mod net;
pub mod socket;
pub mod terminal;
pub mod ui;
