//! The configuration `tokend dev` runs with: embedded defaults, or the user's file with the dev
//! issuer in place of `[provider]`, `[flow]` filled for the dev client, the listeners from the
//! command line, and the state (JWKS disk cache) in the dev directory. Environment overrides
//! do not apply (an `AUTHENTIK_URL` meant for the real daemon must not replace the dev issuer).
//! Listeners are loopback only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::DevError;
use super::issuer::{CLIENT_ID, DevIssuer};
use crate::config::Config;

/// Where the dev listeners go (decided before the config is built).
#[derive(Debug, Clone)]
pub struct DevListen {
    /// The TCP listener's real address (port 0 resolved).
    pub http: SocketAddr,
    pub socket: PathBuf,
    /// The dev state directory (socket, JWKS cache).
    pub dir: PathBuf,
}

/// The file's `[listen]` addresses, for the command line's defaults and the loopback check.
pub fn file_listen(file: &Path) -> Result<(Option<SocketAddr>, Option<PathBuf>), DevError> {
    let table = read_table(file)?;
    let listen = table.get("listen").and_then(Value::as_table);
    let http = listen
        .and_then(|l| l.get("http"))
        .and_then(Value::as_str)
        .map(|s| {
            s.parse::<SocketAddr>().map_err(|_| DevError::Config {
                message: format!("{}: listen.http is not an address", file.display()),
            })
        })
        .transpose()?;
    let socket = listen
        .and_then(|l| l.get("socket"))
        .and_then(Value::as_str)
        .map(PathBuf::from);
    Ok((http, socket))
}

fn read_table(file: &Path) -> Result<Table, DevError> {
    let text = std::fs::read_to_string(file).map_err(|e| DevError::Config {
        message: format!("cannot read {}: {e}", file.display()),
    })?;
    text.parse::<Table>().map_err(|e| DevError::Config {
        message: format!("{}: {}", file.display(), e.to_string().trim_end()),
    })
}

/// The dev configuration: `file` (if any) with the dev issuer, dev flow and dev listeners.
pub fn build(
    file: Option<&Path>,
    issuer: &DevIssuer,
    listen: &DevListen,
) -> Result<Config, DevError> {
    let mut table = match file {
        Some(f) => read_table(f)?,
        None => Table::new(),
    };
    let origin = format!("http://{}", listen.http);
    let str_v = |s: &str| Value::String(s.to_string());

    let l = section(&mut table, "listen");
    l.insert("http".into(), str_v(&listen.http.to_string()));
    l.insert("socket".into(), str_v(&listen.socket.to_string_lossy()));
    l.entry("socket_mode").or_insert_with(|| str_v("0600"));
    l.remove("socket_group");
    l.insert("allow_non_loopback".into(), Value::Boolean(false));

    let mut provider = Table::new();
    provider.insert("issuer".into(), str_v(&issuer.issuer));
    provider.insert("client_id".into(), str_v(CLIENT_ID));
    provider.insert("client_secret".into(), str_v(issuer.client_secret.expose()));
    provider.insert("algorithms".into(), Value::Array(vec![str_v("RS256")]));
    table.insert("provider".into(), Value::Table(provider));

    let j = section(&mut table, "jwks");
    j.insert(
        "cache_file".into(),
        str_v(&listen.dir.join("jwks.json").to_string_lossy()),
    );

    // The dev issuer's keys and sessions die with the process: nothing worth a snapshot.
    section(&mut table, "sessions")
        .entry("snapshot")
        .or_insert(Value::Boolean(false));

    let c = section(&mut table, "cookies");
    c.entry("secure").or_insert(Value::Boolean(false));

    let f = section(&mut table, "flow");
    f.insert("redirect_uri".into(), str_v(&issuer.redirect_uri));
    f.entry("frontend_url")
        .or_insert_with(|| str_v(&format!("{origin}/dev/app")));
    f.entry("organization_scope")
        .or_insert_with(|| str_v("organization"));

    section(&mut table, "log")
        .entry("level")
        .or_insert_with(|| str_v("info"));

    let text = toml::to_string(&table).map_err(|e| DevError::Config {
        message: e.to_string(),
    })?;
    let (origin_path, base_dir) = match file {
        Some(f) => (
            f.to_path_buf(),
            f.parent().unwrap_or(Path::new(".")).to_path_buf(),
        ),
        None => (PathBuf::from("(tokend dev defaults)"), listen.dir.clone()),
    };
    let mut config = Config::from_toml(&text, &origin_path, &base_dir, std::iter::empty())
        .map_err(|e| DevError::Config {
            message: e.to_string(),
        })?;
    config.source = file.map(Path::to_path_buf);
    Ok(config)
}

/// `table[name]` as a table, created when absent (a non-table value is replaced).
fn section<'a>(table: &'a mut Table, name: &str) -> &'a mut Table {
    let entry = table
        .entry(name)
        .or_insert_with(|| Value::Table(Table::new()));
    if !entry.is_table() {
        *entry = Value::Table(Table::new());
    }
    match entry {
        Value::Table(t) => t,
        _ => unreachable!("made a table above"),
    }
}
