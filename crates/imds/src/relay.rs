//! The per-connection relay slirp's `guestfwd=…-cmd:` runs: the guest's TCP connection
//! (stdin/stdout) ↔ the instance's IMDS unix socket.
//!
//! It never writes to stderr: slirp makes stdin, stdout *and* stderr the guest's socket,
//! so anything written there would land in the guest's HTTP stream.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use rustix::event::{PollFd, PollFlags};

/// Joins stdin/stdout to the unix socket at `socket` (see [`relay_fds`]).
pub fn relay(socket: &Path) -> io::Result<()> {
    let input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    let output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    relay_fds(socket, input, output)
}

/// Copies `input` → socket and socket → `output` until both directions are done: when
/// `input` ends, the socket's write side is shut (the server then finishes and closes);
/// when the socket ends (the server closed), the relay returns at once, whether or not
/// `input` has ended. A peer that went away (broken pipe, reset) ends the relay normally;
/// other I/O errors are returned. `input` and `output` may be the same socket.
pub fn relay_fds<I, O>(socket: &Path, mut input: I, mut output: O) -> io::Result<()>
where
    I: Read + AsFd,
    O: Write,
{
    let mut server = UnixStream::connect(socket)?;
    let mut input_open = true;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (input_ready, server_ready) = {
            let mut fds = Vec::with_capacity(2);
            fds.push(PollFd::new(&server, PollFlags::IN));
            if input_open {
                fds.push(PollFd::new(&input, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let server_ready = !fds[0].revents().is_empty();
            let input_ready = fds.get(1).is_some_and(|f| !f.revents().is_empty());
            (input_ready, server_ready)
        };
        if server_ready {
            match server.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => match output.write_all(&buf[..n]).and_then(|()| output.flush()) {
                    Ok(()) => {}
                    Err(e) if peer_gone(&e) => return Ok(()),
                    Err(e) => return Err(e),
                },
                Err(e) if retry(&e) => {}
                Err(e) if peer_gone(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        if input_ready {
            match input.read(&mut buf) {
                Ok(0) => {
                    input_open = false;
                    // The server answers what it has, sees EOF and closes.
                    let _ = server.shutdown(Shutdown::Write);
                }
                Ok(n) => match server.write_all(&buf[..n]) {
                    Ok(()) => {}
                    Err(e) if peer_gone(&e) => return Ok(()),
                    Err(e) => return Err(e),
                },
                Err(e) if retry(&e) => {}
                Err(e) if peer_gone(&e) => {
                    input_open = false;
                    let _ = server.shutdown(Shutdown::Write);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}
