//! The files a user points florence at: finding the images under a folder, and recording the
//! ones a batch command leaves out. Shared by retrieval, evaluation and the training data.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

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
}
