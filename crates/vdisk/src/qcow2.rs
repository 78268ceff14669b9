//! STUB — to be written.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::{Format, Sink, VdiskError, VirtualDisk};

#[derive(Debug)]
pub struct Qcow2Writer {}

impl Qcow2Writer {
    pub fn new(_out: File, _virtual_size: u64) -> io::Result<Qcow2Writer> {
        Err(io::Error::other("not written yet"))
    }
}

impl Sink for Qcow2Writer {
    fn write_at(&mut self, _offset: u64, _data: &[u8]) -> io::Result<()> {
        Err(io::Error::other("not written yet"))
    }
    fn finish(self: Box<Self>, _len: u64, _raw_sha256: &[u8; 32]) -> io::Result<()> {
        Err(io::Error::other("not written yet"))
    }
}

#[derive(Debug)]
pub struct Qcow2Reader {}

impl Qcow2Reader {
    pub fn open(_file: File, path: &Path) -> Result<Qcow2Reader, VdiskError> {
        Err(VdiskError::Bad { path: path.to_path_buf(), format: Format::Qcow2, reason: "not written yet".into() })
    }
}

impl VirtualDisk for Qcow2Reader {
    fn format(&self) -> Format { Format::Qcow2 }
    fn size(&self) -> u64 { 0 }
    fn read_exact_at(&self, _buf: &mut [u8], _offset: u64) -> io::Result<()> {
        Err(io::Error::other("not written yet"))
    }
}
