//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the bridge's private
//! decoders, driven as the ingest paths drive them. Not a stable API.

use crate::ffv3::{Item, Unpacker};
use crate::limits::Limits;

/// One package as unpacked: attributes, the content length its header announced, the content.
pub type Unpacked = (Vec<(String, String)>, u64, Vec<u8>);

/// Unpacks a flowfile-v3 body fed in `pieces` (as the ListenHTTP path receives it) and checks that
/// it ended at a package boundary. `Err` carries the error's text.
pub fn unpack_ffv3(pieces: &[&[u8]], limits: &Limits) -> Result<Vec<Unpacked>, String> {
    let mut u = Unpacker::new(limits);
    let mut out: Vec<Unpacked> = Vec::new();
    for piece in pieces {
        u.push(piece);
        while let Some(item) = u.next().map_err(|e| format!("{e:?}"))? {
            match item {
                Item::Begin { attributes, len } => out.push((attributes, len, Vec::new())),
                Item::Data(d) => match out.last_mut() {
                    Some(p) => p.2.extend_from_slice(&d),
                    None => return Err("content before any package header".into()),
                },
                Item::End => {}
            }
        }
    }
    u.finish().map_err(|e| format!("{e:?}"))?;
    Ok(out)
}
