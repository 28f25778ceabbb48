//! The launch environment (docs/protocol.md §1-§4) and the token line (§6.1).
use std::io::Read;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

pub const MAGIC_COOKIE: &str = "d5b0c3b2-plugwire-v1-7a41f9e6";
pub const SUPPORTED_VERSIONS: &[u32] = &[1];
const TOKEN_PREFIX: &str = "PLUGWIRE_TOKEN ";
const TOKEN_LINE_MAX: usize = 1024;
const TOKEN_WAIT: Duration = Duration::from_secs(5);
const MAX_SOCKET_PATH: usize = 103;

/// Parses `PLUGWIRE_PROTOCOL_VERSIONS` strictly (§3).
pub(crate) fn parse_versions(raw: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for entry in raw.split(',') {
        let d = entry.trim_matches(|c| c == ' ' || c == '\t');
        if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = if d.len() > 10 { return None } else { d.parse().ok()? };
        if n > u32::MAX as u64 {
            return None;
        }
        out.push(n as u32);
    }
    Some(out)
}

fn require(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        Ok(_) => Err(format!("{name} is empty; it must be set by the plugwire host that starts this plugin")),
        Err(_) => Err(format!("{name} is missing; it must be set by the plugwire host that starts this plugin")),
    }
}

/// Where the launch token comes from.
pub(crate) enum TokenSource {
    Stdin,
    Env,
}

/// Checks the environment (everything but the cookie and the token).
pub(crate) fn check_env() -> Result<(u32, String, String, String, TokenSource), String> {
    let raw = require("PLUGWIRE_PROTOCOL_VERSIONS")?;
    let offered = parse_versions(&raw).ok_or_else(|| format!("PLUGWIRE_PROTOCOL_VERSIONS={raw:?} is malformed (expected a comma-separated list of decimal versions such as \"1\")"))?;
    let version = offered.iter().copied().filter(|v| SUPPORTED_VERSIONS.contains(v)).max().ok_or_else(|| {
        let o: Vec<String> = offered.iter().map(|v| v.to_string()).collect();
        let s: Vec<String> = SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect();
        format!(
            "the host accepts protocol versions {} (PLUGWIRE_PROTOCOL_VERSIONS={raw:?}), but this plugin speaks version {}. Upgrade the plugin or the host so they share a version.",
            o.join(","),
            s.join(",")
        )
    })?;
    let dir = require("PLUGWIRE_SOCKET_DIR")?;
    let id = require("PLUGWIRE_INSTANCE_ID")?;
    let host_address = require("PLUGWIRE_HOST_ADDRESS")?;
    let source = match std::env::var("PLUGWIRE_AUTH_TOKEN_SOURCE").unwrap_or_default().as_str() {
        "stdin" => TokenSource::Stdin,
        "" | "env" => TokenSource::Env,
        other => return Err(format!("PLUGWIRE_AUTH_TOKEN_SOURCE={other:?} is neither 'stdin' nor 'env'")),
    };
    if id.len() > 80 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return Err(format!("PLUGWIRE_INSTANCE_ID={id:?} must be 1 to 80 characters of [A-Za-z0-9._-]"));
    }
    if !dir.starts_with('/') || dir.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("PLUGWIRE_SOCKET_DIR={dir:?} must be an absolute path without whitespace or control characters"));
    }
    let socket_path = format!("{dir}/{id}.sock");
    if socket_path.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "socket path {socket_path} is {} bytes, over the limit of {MAX_SOCKET_PATH} (PLUGWIRE_SOCKET_DIR={dir:?})",
            socket_path.len()
        ));
    }
    Ok((version, socket_path, host_address, id, source))
}

/// Reads stdin: first (with `Stdin`) the token line, then until EOF. The
/// token line arrives on the returned channel within 5 s or it is an error;
/// `eof` fires when stdin ends (the host is gone).
pub(crate) fn watch_stdin(read_token: bool, eof: oneshot::Sender<()>) -> Option<std_mpsc::Receiver<Result<String, String>>> {
    let (tx, rx) = std_mpsc::channel();
    std::thread::Builder::new()
        .name("plugwire-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut b = [0u8; 1];
            if read_token {
                let mut line = Vec::new();
                let result = loop {
                    match stdin.read(&mut b) {
                        Ok(0) | Err(_) => break Err("stdin closed before the host wrote the 'PLUGWIRE_TOKEN <token>' line (PLUGWIRE_AUTH_TOKEN_SOURCE=stdin); this plugin must be started by a plugwire host".to_string()),
                        Ok(_) => {
                            if b[0] == b'\n' {
                                break check_token_line(&line);
                            }
                            line.push(b[0]);
                            if line.len() > TOKEN_LINE_MAX {
                                break Err("the first line on stdin is over 1024 bytes; expected 'PLUGWIRE_TOKEN <token>' (PLUGWIRE_AUTH_TOKEN_SOURCE=stdin)".to_string());
                            }
                        }
                    }
                };
                let failed = result.is_err();
                let _ = tx.send(result);
                if failed {
                    let _ = eof.send(());
                    return;
                }
            }
            let mut buf = [0u8; 4096];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = eof.send(());
        })
        .expect("spawn stdin thread");
    if read_token {
        Some(rx)
    } else {
        None
    }
}

pub(crate) fn check_token_line(line: &[u8]) -> Result<String, String> {
    let tail = "; the host writes 'PLUGWIRE_TOKEN <token>' there (PLUGWIRE_AUTH_TOKEN_SOURCE=stdin)";
    let Some(rest) = line.strip_prefix(TOKEN_PREFIX.as_bytes()) else {
        return Err(format!("the first line on stdin ({} bytes) does not start with 'PLUGWIRE_TOKEN '{tail}", line.len()));
    };
    if rest.is_empty() || !rest.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(format!("the token on the first line of stdin is empty or holds a space or a control character{tail}"));
    }
    // Printable ASCII, so valid UTF-8.
    Ok(String::from_utf8_lossy(rest).into_owned())
}

/// Waits for the token line (at most 5 s).
pub(crate) fn wait_token(rx: std_mpsc::Receiver<Result<String, String>>) -> Result<String, String> {
    match rx.recv_timeout(TOKEN_WAIT) {
        Ok(r) => r,
        Err(_) => Err("no 'PLUGWIRE_TOKEN <token>' line arrived on stdin within 5 s (PLUGWIRE_AUTH_TOKEN_SOURCE=stdin); this plugin must be started by a plugwire host".to_string()),
    }
}

pub(crate) fn env_token() -> Result<String, String> {
    let t = require("PLUGWIRE_AUTH_TOKEN")?;
    // The token must not reach child processes.
    std::env::remove_var("PLUGWIRE_AUTH_TOKEN");
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_parsed_strictly() {
        assert_eq!(parse_versions("1"), Some(vec![1]));
        assert_eq!(parse_versions("2, 1"), Some(vec![2, 1]));
        assert_eq!(parse_versions(" 1\t,3 "), Some(vec![1, 3]));
        for bad in ["1,abc", "1,,2", "1,", "+1", "1.0", "4294967296", "", "99999999999"] {
            assert_eq!(parse_versions(bad), None, "{bad}");
        }
        assert_eq!(parse_versions("4294967295"), Some(vec![u32::MAX]));
    }

    #[test]
    fn token_line_is_checked() {
        assert_eq!(check_token_line(b"PLUGWIRE_TOKEN abc").unwrap(), "abc");
        assert!(check_token_line(b"PLUGWIRE_TOKEN ").is_err());
        assert!(check_token_line(b"PLUGWIRE_TOKEN a b").is_err());
        assert!(check_token_line(b"PLUGWIRE_TOKEN abc\r").is_err());
        assert!(check_token_line(b"PLUGWIRE_TOKENabc").is_err());
        assert!(check_token_line(b"abc").is_err());
    }
}
