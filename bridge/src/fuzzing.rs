//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the bridge's private
//! decoders, driven as the ingest paths drive them. Not a stable API.

use crate::ffv3::{Item, UnpackError, Unpacker};
use crate::ingest::ffv1::TarUnpacker;
use crate::limits::Limits;

/// One package as unpacked: attributes, the content length its header announced, the content.
pub type Unpacked = (Vec<(String, String)>, u64, Vec<u8>);

/// The package formats the ListenHTTP path unpacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/flowfile-v3`: `NiFiFF3` before every package.
    V3,
    /// `application/flowfile-v2`: v3's layout without the magic.
    V2,
    /// `application/flowfile` (v1): one tar package with a properties XML document.
    V1,
}

/// Unpacks a flowfile-v3 body fed in `pieces` (as the ListenHTTP path receives it) and checks that
/// it ended at a package boundary. `Err` carries the error's text.
pub fn unpack_ffv3(pieces: &[&[u8]], limits: &Limits) -> Result<Vec<Unpacked>, String> {
    unpack(Format::V3, pieces, limits)
}

/// Unpacks a body of `format` fed in `pieces` (as the ListenHTTP path receives it) and checks that
/// it was complete. `Err` carries the error's text.
pub fn unpack(format: Format, pieces: &[&[u8]], limits: &Limits) -> Result<Vec<Unpacked>, String> {
    match format {
        Format::V3 => drive(Unpacker::new(limits), pieces),
        Format::V2 => drive(Unpacker::v2(limits), pieces),
        Format::V1 => drive(TarUnpacker::new(limits), pieces),
    }
}

/// The incremental unpackers' common surface.
trait Incremental {
    fn push(&mut self, data: &[u8]);
    fn next(&mut self) -> Result<Option<Item>, UnpackError>;
    fn finish(&self) -> Result<(), UnpackError>;
}

impl Incremental for Unpacker {
    fn push(&mut self, data: &[u8]) {
        Unpacker::push(self, data);
    }
    fn next(&mut self) -> Result<Option<Item>, UnpackError> {
        Unpacker::next(self)
    }
    fn finish(&self) -> Result<(), UnpackError> {
        Unpacker::finish(self)
    }
}

impl Incremental for TarUnpacker {
    fn push(&mut self, data: &[u8]) {
        TarUnpacker::push(self, data);
    }
    fn next(&mut self) -> Result<Option<Item>, UnpackError> {
        TarUnpacker::next(self)
    }
    fn finish(&self) -> Result<(), UnpackError> {
        TarUnpacker::finish(self)
    }
}

fn drive(mut u: impl Incremental, pieces: &[&[u8]]) -> Result<Vec<Unpacked>, String> {
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
