//! Fixed newstyle negotiation: greeting, client flags, option haggling (see the crate doc
//! for the messages). Ends in transmission (NBD_OPT_GO / NBD_OPT_EXPORT_NAME) or not at all.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use crate::NbdError;
use crate::proto::*;
use crate::server::{Export, ServerConfig};

/// Largest option payload read into memory (INFO/GO: 4 + 4096 name + 2 + requests).
const MAX_OPTION_DATA: u32 = 16 * 1024;
/// Largest payload of an unknown or oversized option that is drained rather than
/// answered by a hard disconnect.
const MAX_DRAIN: u32 = 1 << 20;
/// Most options one connection may send (a client looping forever is cut off).
const MAX_OPTIONS: usize = 1024;

/// What a connection serves once negotiation succeeded.
pub(crate) struct Negotiated {
    pub export: Arc<Export>,
    pub size: u64,
    pub flags: u16,
}

/// Transmission flags for an export.
pub(crate) fn transmission_flags(export: &Export) -> u16 {
    let f = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_CACHE | TF_CAN_MULTI_CONN;
    if export.device.read_only() {
        // Writes are refused (EPERM), so the write-only features are not advertised.
        f | TF_READ_ONLY
    } else {
        f | TF_SEND_FUA | TF_SEND_TRIM | TF_SEND_WRITE_ZEROES
    }
}

/// Reads and discards `n` bytes.
pub(crate) fn drain<R: Read>(r: &mut R, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.by_ref().take(n), &mut io::sink())?;
    if copied < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn read_u32<R: Read>(r: &mut R) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn lookup(exports: &BTreeMap<String, Arc<Export>>, name: &[u8]) -> Option<Arc<Export>> {
    if name.is_empty() && exports.len() == 1 {
        return exports.values().next().cloned();
    }
    let name = std::str::from_utf8(name).ok()?;
    exports.get(name).cloned()
}

/// Runs the negotiation. `Ok(None)`: the client ended it (NBD_OPT_ABORT) or left.
pub(crate) fn negotiate<S: Read + Write>(
    s: &mut S,
    exports: &BTreeMap<String, Arc<Export>>,
    config: &ServerConfig,
) -> Result<Option<Negotiated>, NbdError> {
    let mut greeting = [0u8; 18];
    greeting[0..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    greeting[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    greeting[16..18].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&greeting)?;

    let client_flags = match read_u32(s) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(NbdError::Protocol(format!(
            "unknown client flags {client_flags:#x}"
        )));
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;

    for _ in 0..MAX_OPTIONS {
        let mut header = [0u8; 16];
        match s.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        if be64(&header[0..8]) != IHAVEOPT {
            return Err(NbdError::Protocol("bad option magic".into()));
        }
        let option = be32(&header[8..12]);
        let len = be32(&header[12..16]);
        let known = matches!(
            option,
            OPT_EXPORT_NAME | OPT_ABORT | OPT_LIST | OPT_INFO | OPT_GO
        );
        if !known || len > MAX_OPTION_DATA {
            if len > MAX_DRAIN {
                return Err(NbdError::Protocol(format!(
                    "option {option} with {len} bytes of data"
                )));
            }
            drain(s, u64::from(len))?;
            if option == OPT_EXPORT_NAME {
                return Err(NbdError::Protocol("export name too long".into()));
            }
            let (code, msg) = if known {
                (REP_ERR_TOO_BIG, "option data too large")
            } else {
                (REP_ERR_UNSUP, "option not supported")
            };
            reply(s, option, code, msg.as_bytes())?;
            continue;
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data)?;
        match option {
            OPT_ABORT => {
                // The client may already be gone; the session ends either way.
                let _ = reply(s, option, REP_ACK, &[]);
                return Ok(None);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    reply(s, option, REP_ERR_INVALID, b"NBD_OPT_LIST takes no data")?;
                    continue;
                }
                let mut out = Vec::new();
                for export in exports.values() {
                    let mut d = Vec::with_capacity(4 + export.name.len());
                    d.extend_from_slice(&(export.name.len() as u32).to_be_bytes());
                    d.extend_from_slice(export.name.as_bytes());
                    if let Some(desc) = &export.description {
                        d.extend_from_slice(desc.as_bytes());
                    }
                    push_option_reply(&mut out, option, REP_SERVER, &d);
                }
                push_option_reply(&mut out, option, REP_ACK, &[]);
                s.write_all(&out)?;
            }
            OPT_EXPORT_NAME => {
                let Some(export) = lookup(exports, &data) else {
                    return Err(NbdError::Protocol(format!(
                        "NBD_OPT_EXPORT_NAME: unknown export {:?}",
                        String::from_utf8_lossy(&data)
                    )));
                };
                let size = export.device.size();
                let flags = transmission_flags(&export);
                let mut out = Vec::with_capacity(134);
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(&flags.to_be_bytes());
                if !no_zeroes {
                    out.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&out)?;
                return Ok(Some(Negotiated {
                    export,
                    size,
                    flags,
                }));
            }
            _ => {
                // OPT_INFO or OPT_GO
                if let Some(n) = info_or_go(s, option, &data, exports, config)? {
                    return Ok(Some(n));
                }
            }
        }
    }
    Err(NbdError::Protocol(format!(
        "more than {MAX_OPTIONS} options"
    )))
}

fn reply<W: Write>(s: &mut W, option: u32, code: u32, data: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(20 + data.len());
    push_option_reply(&mut out, option, code, data);
    s.write_all(&out)
}

/// Parses `u32 namelen, name, u16 n, n × u16`; `None` when malformed.
fn parse_info_request(data: &[u8]) -> Option<(&[u8], Vec<u16>)> {
    if data.len() < 6 {
        return None;
    }
    let name_len = be32(&data[0..4]) as usize;
    let rest = data.len() - 6;
    if name_len > rest {
        return None;
    }
    let name = &data[4..4 + name_len];
    let count = be16(&data[4 + name_len..6 + name_len]) as usize;
    let list = &data[6 + name_len..];
    if list.len() != count * 2 {
        return None;
    }
    Some((name, list.chunks_exact(2).map(be16).collect()))
}

fn info_or_go<S: Read + Write>(
    s: &mut S,
    option: u32,
    data: &[u8],
    exports: &BTreeMap<String, Arc<Export>>,
    config: &ServerConfig,
) -> Result<Option<Negotiated>, NbdError> {
    let Some((name, requests)) = parse_info_request(data) else {
        reply(s, option, REP_ERR_INVALID, b"malformed NBD_OPT_INFO/GO")?;
        return Ok(None);
    };
    if name.len() > MAX_STRING {
        reply(s, option, REP_ERR_INVALID, b"export name too long")?;
        return Ok(None);
    }
    let Some(export) = lookup(exports, name) else {
        let msg = format!("unknown export {:?}", String::from_utf8_lossy(name));
        reply(s, option, REP_ERR_UNKNOWN, msg.as_bytes())?;
        return Ok(None);
    };
    let size = export.device.size();
    let flags = transmission_flags(&export);
    let mut out = Vec::new();
    let mut info = Vec::with_capacity(12);
    info.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    info.extend_from_slice(&size.to_be_bytes());
    info.extend_from_slice(&flags.to_be_bytes());
    push_option_reply(&mut out, option, REP_INFO, &info);
    // Sent whether asked or not (as qemu-nbd does): the constraints are only hints with a
    // minimum of 1, so a client that did not ask loses nothing.
    info.clear();
    info.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    info.extend_from_slice(&1u32.to_be_bytes());
    info.extend_from_slice(&config.preferred_block_size.to_be_bytes());
    info.extend_from_slice(&config.max_payload.to_be_bytes());
    push_option_reply(&mut out, option, REP_INFO, &info);
    if requests.contains(&INFO_NAME) {
        info.clear();
        info.extend_from_slice(&INFO_NAME.to_be_bytes());
        info.extend_from_slice(export.name.as_bytes());
        push_option_reply(&mut out, option, REP_INFO, &info);
    }
    if let (true, Some(desc)) = (requests.contains(&INFO_DESCRIPTION), &export.description) {
        info.clear();
        info.extend_from_slice(&INFO_DESCRIPTION.to_be_bytes());
        info.extend_from_slice(desc.as_bytes());
        push_option_reply(&mut out, option, REP_INFO, &info);
    }
    push_option_reply(&mut out, option, REP_ACK, &[]);
    s.write_all(&out)?;
    if option == OPT_GO {
        return Ok(Some(Negotiated {
            export,
            size,
            flags,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_request_parsing() {
        let mut d = Vec::new();
        d.extend_from_slice(&3u32.to_be_bytes());
        d.extend_from_slice(b"vol");
        d.extend_from_slice(&2u16.to_be_bytes());
        d.extend_from_slice(&INFO_NAME.to_be_bytes());
        d.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        let (name, reqs) = parse_info_request(&d).unwrap_or_else(|| panic!("parse"));
        assert_eq!(name, b"vol");
        assert_eq!(reqs, vec![INFO_NAME, INFO_BLOCK_SIZE]);
        // Count disagrees with the length.
        let mut bad = d.clone();
        bad[8] = 0;
        bad[9] = 3;
        assert!(parse_info_request(&bad).is_none());
        // Name length beyond the data.
        let mut bad = d.clone();
        bad[3] = 200;
        assert!(parse_info_request(&bad).is_none());
        assert!(parse_info_request(&d[..5]).is_none());
    }
}
