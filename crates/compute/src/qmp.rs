//! A small QMP client: JSON lines over QEMU's unix socket.
//!
//! [`Qmp::connect`] reads the greeting and negotiates capabilities; then a reader thread
//! owns the socket's read side. Commands carry an `id` and the caller waits for the
//! response with that id, while events (which arrive at any time, even between a command
//! and its response) are collected in order, appended to an optional `events.jsonl`, and
//! can be waited for. One command is in flight at a time.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Error, Result};

/// How long a QMP command may take before we give up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// The event name, e.g. `SHUTDOWN`, `DEVICE_DELETED`, `RESET`.
    pub name: String,
    /// Its `data` member (`Null` when absent).
    pub data: Value,
}

#[derive(Default)]
struct Inner {
    responses: HashMap<u64, std::result::Result<Value, (String, String)>>,
    events: Vec<QmpEvent>,
    closed: Option<String>,
}

struct Shared {
    inner: Mutex<Inner>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner half-updated in a way that
        // matters (every update is a single push/insert), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A QMP connection.
pub struct Qmp {
    writer: Mutex<UnixStream>,
    shared: Arc<Shared>,
    next_id: Mutex<u64>,
    socket: PathBuf,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp").field("socket", &self.socket).finish()
    }
}

impl Qmp {
    /// Connects to the QMP socket, reads the greeting and enters command mode. Events are
    /// appended to `event_log` (one JSON object a line) when given.
    pub fn connect(socket: &Path, event_log: Option<PathBuf>) -> Result<Qmp> {
        let stream = UnixStream::connect(socket)
            .map_err(|e| Error::io(format!("connecting to QMP {}", socket.display()), e))?;
        stream
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .map_err(|e| Error::io("setting QMP read timeout", e))?;
        let read_half = stream
            .try_clone()
            .map_err(|e| Error::io("cloning QMP socket", e))?;
        let mut reader = BufReader::new(read_half);
        let mut greeting = String::new();
        reader
            .read_line(&mut greeting)
            .map_err(|e| Error::io(format!("reading QMP greeting on {}", socket.display()), e))?;
        let greeting: Value = serde_json::from_str(&greeting)
            .map_err(|e| Error::QmpProtocol(format!("bad greeting {greeting:?}: {e}")))?;
        if greeting.get("QMP").is_none() {
            return Err(Error::QmpProtocol(format!(
                "unexpected greeting {greeting}"
            )));
        }
        // The reader thread blocks until data or EOF; dropping Qmp shuts the socket down.
        reader
            .get_ref()
            .set_read_timeout(None)
            .map_err(|e| Error::io("clearing QMP read timeout", e))?;

        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            cond: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("qmp-reader".into())
            .spawn(move || read_loop(reader, &thread_shared, event_log))
            .map_err(|e| Error::io("spawning QMP reader thread", e))?;

        let qmp = Qmp {
            writer: Mutex::new(stream),
            shared,
            next_id: Mutex::new(1),
            socket: socket.to_path_buf(),
        };
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs a command and returns its `return` value.
    pub fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value> {
        self.execute_timeout(command, arguments, COMMAND_TIMEOUT)
    }

    /// Runs a command, waiting at most `timeout` for its response.
    pub fn execute_timeout(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let id = {
            let mut next = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
            let id = *next;
            *next += 1;
            id
        };
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        {
            let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            writer
                .write_all(line.as_bytes())
                .map_err(|e| Error::io(format!("sending QMP {command}"), e))?;
        }
        let deadline = Instant::now() + timeout;
        let mut inner = self.shared.lock();
        loop {
            if let Some(resp) = inner.responses.remove(&id) {
                return resp.map_err(|(class, desc)| Error::QmpCommand {
                    command: command.to_string(),
                    class,
                    desc,
                });
            }
            if let Some(why) = &inner.closed {
                return Err(Error::QmpProtocol(format!(
                    "connection closed before the answer to {command}: {why}"
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: format!("the answer to QMP {command}"),
                    seconds: timeout.as_secs_f64(),
                });
            }
            inner = self
                .shared
                .cond
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// All events received so far, oldest first.
    pub fn events(&self) -> Vec<QmpEvent> {
        self.shared.lock().events.clone()
    }

    /// The number of events received so far (a cursor for [`Qmp::wait_event`]).
    pub fn event_count(&self) -> usize {
        self.shared.lock().events.len()
    }

    /// Waits for an event at index `from` or later that satisfies `pred`; returns it.
    /// `Ok(None)` on timeout or when the connection closed without one.
    pub fn wait_event(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&QmpEvent) -> bool,
    ) -> Option<QmpEvent> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.shared.lock();
        loop {
            if let Some(ev) = inner.events.iter().skip(from).find(|e| pred(e)) {
                return Some(ev.clone());
            }
            let now = Instant::now();
            if inner.closed.is_some() || now >= deadline {
                return None;
            }
            inner = self
                .shared
                .cond
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Why the connection closed, if it did (QEMU exited, socket error).
    pub fn closed(&self) -> Option<String> {
        self.shared.lock().closed.clone()
    }
}

impl Drop for Qmp {
    fn drop(&mut self) {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // Wakes the reader thread, which then ends.
        let _ = writer.shutdown(std::net::Shutdown::Both);
    }
}

fn read_loop(mut reader: BufReader<UnixStream>, shared: &Shared, event_log: Option<PathBuf>) {
    let mut log = event_log.and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| tracing::warn!("cannot open QMP event log {}: {e}", p.display()))
            .ok()
    });
    let mut line = String::new();
    let why = loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break "end of stream".to_string(),
            Ok(_) => {}
            Err(e) => break format!("read error: {e}"),
        }
        let msg: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("ignoring bad QMP line {line:?}: {e}");
                continue;
            }
        };
        let mut inner = shared.lock();
        if let Some(name) = msg.get("event").and_then(Value::as_str) {
            if let Some(f) = log.as_mut() {
                let _ = f.write_all(line.as_bytes());
            }
            inner.events.push(QmpEvent {
                name: name.to_string(),
                data: msg.get("data").cloned().unwrap_or(Value::Null),
            });
        } else if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            let resp = if let Some(ret) = msg.get("return") {
                Ok(ret.clone())
            } else {
                let err = msg.get("error");
                let field = |k: &str| {
                    err.and_then(|e| e.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                Err((field("class"), field("desc")))
            };
            inner.responses.insert(id, resp);
        } else {
            tracing::debug!("ignoring QMP message without id: {line}");
        }
        drop(inner);
        shared.cond.notify_all();
    };
    shared.lock().closed = Some(why);
    shared.cond.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake QMP server: greeting, then answers commands, interleaving an event.
    #[test]
    fn matches_responses_and_collects_events() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("q.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut w = conn.try_clone().unwrap();
            let mut r = BufReader::new(conn);
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut line = String::new();
            while {
                line.clear();
                r.read_line(&mut line).unwrap() > 0
            } {
                let v: Value = serde_json::from_str(&line).unwrap();
                let id = v["id"].clone();
                match v["execute"].as_str().unwrap() {
                    "query-status" => {
                        writeln!(w, r#"{{"event": "RESET", "data": {{"guest": true}}}}"#).unwrap();
                        writeln!(w, "{}", json!({"return": {"status": "running"}, "id": id}))
                            .unwrap();
                    }
                    "bad" => writeln!(
                        w,
                        "{}",
                        json!({"error": {"class": "CommandNotFound", "desc": "no"}, "id": id})
                    )
                    .unwrap(),
                    _ => writeln!(w, "{}", json!({"return": {}, "id": id})).unwrap(),
                }
            }
        });
        let log = dir.path().join("events.jsonl");
        let qmp = Qmp::connect(&sock, Some(log.clone())).unwrap();
        let st = qmp.execute("query-status", None).unwrap();
        assert_eq!(st["status"], "running");
        let ev = qmp
            .wait_event(0, Duration::from_secs(5), |e| e.name == "RESET")
            .unwrap();
        assert_eq!(ev.data["guest"], true);
        match qmp.execute("bad", None) {
            Err(Error::QmpCommand { class, .. }) => assert_eq!(class, "CommandNotFound"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(std::fs::read_to_string(&log).unwrap().contains("RESET"));
        drop(qmp);
        server.join().unwrap();
    }
}
