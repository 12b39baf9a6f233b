//! Reading files a user points the library at (configs, tokenizer files, reference audio,
//! saved voices, weights) without letting the path decide how long or how much: only regular
//! files are read, and never more than a stated number of bytes.
//!
//! A device (`/dev/zero`, `/dev/urandom`), or a symlink to one, reports a length of 0 and reads
//! forever; a FIFO blocks in `open` until a writer appears. Both are refused: on Unix the file
//! is opened non-blocking (a FIFO opens at once) and its type checked on the open handle, so
//! what is checked is what is read; elsewhere the type is checked before opening.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// Opens `path` for reading if it is a regular file (after following symlinks).
pub(crate) fn open_regular(path: &Path) -> Result<File> {
    #[cfg(unix)]
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Error::from_io(&e, path))?
    };
    #[cfg(not(unix))]
    let file = {
        let meta = std::fs::metadata(path).map_err(|e| Error::from_io(&e, path))?;
        if !meta.is_file() {
            return Err(not_regular(path));
        }
        File::open(path).map_err(|e| Error::from_io(&e, path))?
    };
    let meta = file.metadata().map_err(|e| Error::from_io(&e, path))?;
    if !meta.is_file() {
        return Err(not_regular(path));
    }
    Ok(file)
}

fn not_regular(path: &Path) -> Error {
    Error::new(
        ErrorKind::Io,
        format!("{} cannot be read: it is not a regular file (a directory, device, FIFO or socket)", path.display()),
    )
}

/// The whole of `path`, a regular file of at most `max_bytes`. A larger file is refused
/// before it is read, with `too_large(size)`; a file that grows past the limit while it is
/// read is refused the same way.
pub(crate) fn read_bounded(path: &Path, max_bytes: u64, too_large: impl Fn(u64) -> Error) -> Result<Vec<u8>> {
    let file = open_regular(path)?;
    let size = file.metadata().map_err(|e| Error::from_io(&e, path))?.len();
    if size > max_bytes {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(max_bytes + 1).read_to_end(&mut bytes).map_err(|e| Error::from_io(&e, path))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn too_large(size: u64) -> Error {
        Error::invalid_argument(format!("{size} bytes"))
    }

    #[test]
    fn devices_directories_and_fifos_are_refused_without_reading() {
        for path in ["/dev/zero", "/dev/urandom", "/"] {
            let err = read_bounded(Path::new(path), 1 << 20, too_large).unwrap_err();
            assert!(err.message().contains("not a regular file"), "{path}: {err}");
        }
        let dir = std::env::temp_dir().join(format!("qt-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let err = read_bounded(&fifo, 1 << 20, too_large).unwrap_err();
        assert!(err.message().contains("not a regular file"), "{err}");
        let link = dir.join("zero-link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(read_bounded(&link, 1 << 20, too_large).unwrap_err().message().contains("not a regular file"));
        let file = dir.join("file");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_bounded(&file, 10, too_large).unwrap(), b"0123456789");
        assert_eq!(read_bounded(&file, 9, too_large).unwrap_err().message(), "10 bytes");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
