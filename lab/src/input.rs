//! Reading the files a user names (topologies, scenarios): regular files only, and bounded, so
//! `lab up /dev/zero` is a one-line error instead of a process growing to gigabytes.

use std::io::Read;
use std::path::Path;

/// The largest topology or scenario file read (the biggest in the repository is under 10 KiB).
pub const MAX_INPUT_BYTES: u64 = 1 << 20;

/// The text of `path`, or why it cannot be an input file (without the path: callers name it).
pub fn read_text(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(
            "not a regular file (a directory, device or pipe cannot be read as one)".into(),
        );
    }
    let mut bytes = Vec::new();
    // `take` one byte past the limit: a file that grows while it is read is caught too.
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(format!(
            "larger than {} KiB: not a topology or scenario file",
            MAX_INPUT_BYTES >> 10
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_huge_files_are_refused() {
        assert!(
            read_text(Path::new("/dev/zero"))
                .unwrap_err()
                .contains("not a regular file")
        );
        assert!(
            read_text(Path::new("/"))
                .unwrap_err()
                .contains("not a regular file")
        );
        let dir = std::env::temp_dir().join(format!("lab-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_INPUT_BYTES as usize + 1]).unwrap();
        assert!(
            read_text(&big)
                .unwrap_err()
                .contains("larger than 1024 KiB")
        );
        let ok = dir.join("ok.toml");
        std::fs::write(&ok, "name = \"x\"\n").unwrap();
        assert_eq!(read_text(&ok).unwrap(), "name = \"x\"\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
