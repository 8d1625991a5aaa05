//! Serves raw files over NBD until Ctrl-C:
//! `cargo run -p nbd --example serve -- /tmp/nbd.sock vol=/path/disk.raw [ro=/path/other.raw:ro]`
//! then e.g. `nbdinfo 'nbd+unix:///vol?socket=/tmp/nbd.sock'`.

use std::path::Path;
use std::sync::Arc;

use nbd::{BlockDevice, Export, FileDevice, NbdServer, ServerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let socket = args.next().ok_or("usage: serve SOCKET NAME=FILE[:ro]...")?;
    let mut exports = Vec::new();
    for spec in args {
        let (name, file) = spec.split_once('=').ok_or("NAME=FILE expected")?;
        let (file, ro) = match file.strip_suffix(":ro") {
            Some(f) => (f, true),
            None => (file, false),
        };
        let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::open(Path::new(file), ro)?);
        exports.push(Export::new(name, dev).with_description(file));
    }
    let handle = NbdServer::bind_unix_with(&socket, exports, ServerConfig::default())?;
    eprintln!("serving on {}", handle.path().display());
    loop {
        std::thread::park();
    }
}
