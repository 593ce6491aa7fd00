//! `tokentop`: the console for tokend (live sessions, exchange-code TTLs, Authentik's event
//! log). It knows the daemon only through `tokend-shared`. For now it prints its version.

fn main() {
    println!("tokentop {}", env!("CARGO_PKG_VERSION"));
}
