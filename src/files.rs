//! The files a user points florence at: finding the images under a folder, and recording the
//! ones a batch command leaves out. Shared by retrieval, evaluation and the training data. Also
//! the one way florence writes a file atomically ([`write_atomic`]).

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{FlorenceError, Result};

/// File extensions that [`list_images`] picks up (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// A file left out of a batch job (an index, an evaluation, a training epoch), and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// The decoder's message.
    pub reason: String,
}

/// Reads a text file given by the user (labels, templates, captions, annotations, configs),
/// refusing one larger than [`crate::limits::Limits::max_annotation_bytes`] before reading it.
pub fn read_text_file(path: &Path) -> Result<String> {
    let io = |source| FlorenceError::Io { path: path.into(), source };
    let len = std::fs::metadata(path).map_err(io)?.len();
    let limit = crate::limits::get().max_annotation_bytes;
    crate::limits::check_bytes(format!("the file {}", path.display()), len, limit, "max_annotation_bytes")?;
    std::fs::read_to_string(path).map_err(io)
}

/// Whether `path` has one of the [`IMAGE_EXTENSIONS`].
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
}

/// Image files under `folder` (recursively, following symbolic links), by extension, sorted by
/// path so an index is reproducible. Paths start with `folder` as given.
///
/// Each file is listed once: a symbolic link that leads back to one of its own ancestors (a
/// loop, e.g. `loop -> .`) is not entered, and where several paths reach the same file (links,
/// or a folder linked twice) only the first in sorted order is kept.
pub fn list_images(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    // walkdir detects a link back to an ancestor and reports it as an error for that entry
    // instead of descending into it.
    for entry in walkdir::WalkDir::new(folder).follow_links(true) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.loop_ancestor().is_some() => continue,
            Err(e) => {
                let path = e.path().unwrap_or(folder).to_path_buf();
                let source = e.into_io_error().unwrap_or_else(|| std::io::Error::other("cannot walk the folder"));
                return Err(FlorenceError::Io { path, source });
            }
        };
        if entry.file_type().is_file() && has_image_extension(entry.path()) {
            found.push(entry.into_path());
        }
    }
    found.sort();
    let mut seen = HashSet::with_capacity(found.len());
    found.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    Ok(found)
}

/// Writes `path` atomically: `write` fills a fresh temporary file in the same folder (named
/// `.<file name>.<random>.partial`), which is flushed to disk and renamed over `path` only when
/// `write` succeeds. Readers see the old file or the whole new one, never part of it; on any error
/// the temporary file is removed and `path` is left as it was.
///
/// `write` may write through the handle (`NamedTempFile` is `Write + Seek`, and
/// [`NamedTempFile::as_file_mut`] gives the `File`) or reopen [`NamedTempFile::path`] by name, as
/// writers that only take a path do. The new file gets the permissions `std::fs::write` would give
/// it (`0o666` less the umask), not the temporary file's usual `0o600`.
pub(crate) fn write_atomic(path: &Path, write: impl FnOnce(&mut NamedTempFile) -> io::Result<()>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    write(&mut tmp)?;
    tmp.flush()?;
    tmp.as_file().sync_all()?;
    // On failure the error holds the temporary file, which is deleted when it drops.
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// [`write_atomic`] of a byte buffer, with errors naming `path`.
pub(crate) fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |f| f.write_all(bytes)).map_err(|source| FlorenceError::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("florence-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn extensions_are_case_insensitive() {
        assert!(has_image_extension(Path::new("a/B.JPG")));
        assert!(has_image_extension(Path::new("x.tiff")));
        assert!(!has_image_extension(Path::new("notes.txt")));
        assert!(!has_image_extension(Path::new("png")));
    }

    /// Regression: a folder holding one image and a link `loop -> .` was indexed 41 times
    /// (`loop/a.png`, `loop/loop/a.png`, ... until the path got too long).
    #[cfg(unix)]
    #[test]
    fn symlink_loops_are_not_followed_and_each_file_is_listed_once() {
        let dir = scratch("loop");
        std::fs::write(dir.join("a.png"), b"x").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/b.JPG"), b"x").unwrap();
        std::fs::write(dir.join("sub/notes.txt"), b"x").unwrap();
        std::os::unix::fs::symlink(".", dir.join("loop")).unwrap();
        std::os::unix::fs::symlink("..", dir.join("sub/up")).unwrap();
        std::os::unix::fs::symlink("a.png", dir.join("z_alias.png")).unwrap();
        let got = list_images(&dir).unwrap();
        assert_eq!(got, vec![dir.join("a.png"), dir.join("sub/b.JPG")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_folder_is_an_io_error_naming_it() {
        let dir = scratch("missing").join("nope");
        match list_images(&dir) {
            Err(FlorenceError::Io { path, .. }) => assert_eq!(path, dir),
            other => panic!("{other:?}"),
        }
    }

    /// Files in `dir` other than `keep`: what a write left behind.
    fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !keep.contains(&n.as_str()))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn atomic_writes_replace_the_file_and_leave_nothing_else() {
        let dir = scratch("atomic");
        let path = dir.join("out.bin");
        write_bytes_atomic(&path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_bytes_atomic(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        // A writer that reopens the temporary file by name.
        write_atomic(&path, |f| std::fs::write(f.path(), b"by name")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"by name");
        assert_eq!(leftovers(&dir, &["out.bin"]), Vec::<String>::new());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // What `std::fs::write` gives (0o666 less the umask), not tempfile's owner-only 0o600.
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            let plain = dir.join("plain.bin");
            std::fs::write(&plain, b"x").unwrap();
            assert_eq!(mode(&path), mode(&plain), "{:o}", mode(&path));
            std::fs::remove_file(&plain).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_atomic_write_keeps_the_old_file_and_removes_the_temporary_one() {
        let dir = scratch("atomic-fail");
        let path = dir.join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        let err = write_atomic(&path, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("serialiser failed"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "serialiser failed");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(leftovers(&dir, &["out.bin"]), Vec::<String>::new());
        // A missing folder is an I/O error naming the target.
        let missing = dir.join("nope").join("x.bin");
        match write_bytes_atomic(&missing, b"x") {
            Err(FlorenceError::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
