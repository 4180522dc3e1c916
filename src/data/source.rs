//! Training data sources: image-label folders, image-text JSONL or CSV, and mixes of them.
//!
//! UniCL trains on both kinds in one batch stream (Yang et al., 2022, §3.2): an image-label pair
//! becomes a caption by filling a prompt template with the class name, drawn per sample, and its
//! UniCL label is the class; an image-text pair's label is its exact caption
//! ([`super::label_for_text`]), so identical captions are positives of each other.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::batch::label_for_text;
use crate::error::{FlorenceError, Result};
use crate::files::{has_image_extension, list_images};

/// What an example's text side is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A caption, used as is.
    Caption(String),
    /// A class of an image-label dataset: index into [`Dataset::classes`].
    Class(usize),
}

/// One image and its text side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The image file.
    pub path: PathBuf,
    /// Caption or class.
    pub target: Target,
}

/// A list of examples, with the class names that [`Target::Class`] indexes and the prompt
/// templates that turn a class into a caption.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    /// The examples, in a fixed order (sorted by path within each source).
    pub examples: Vec<Example>,
    /// Class names of the image-label parts.
    pub classes: Vec<String>,
    /// Templates with one `{}` each, for image-label examples.
    pub templates: Vec<String>,
}

/// A source in a training config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSpec {
    /// A folder with one sub-folder of images per class; the sub-folder name is the class name.
    Folder {
        /// The root folder.
        path: PathBuf,
    },
    /// A JSON-lines file, one `{"image": ..., "caption": ...}` object per line; image paths are
    /// relative to the file's folder unless absolute.
    Jsonl {
        /// The file.
        path: PathBuf,
    },
    /// A CSV file with a header naming `image` and `caption` columns (RFC 4180 quoting).
    Csv {
        /// The file.
        path: PathBuf,
    },
}

impl SourceSpec {
    /// Reads the source; paths are relative to `base` unless absolute.
    pub fn load(&self, base: &Path) -> Result<Dataset> {
        let at = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        match self {
            Self::Folder { path } => Dataset::image_folder(&at(path)),
            Self::Jsonl { path } => Dataset::captions_jsonl(&at(path)),
            Self::Csv { path } => Dataset::captions_csv(&at(path)),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FlorenceError + '_ {
    move |source| FlorenceError::Io { path: path.to_path_buf(), source }
}

fn data_err(path: &Path, msg: impl std::fmt::Display) -> FlorenceError {
    FlorenceError::Input(format!("dataset {}: {msg}", path.display()))
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// An image-label folder: every sub-folder of `root` is a class (sorted by name), every image
    /// below it (recursively, by extension) an example. Files directly in `root` are an error,
    /// since their class is unknown. Templates default to `{}` alone; set [`Dataset::templates`].
    pub fn image_folder(root: &Path) -> Result<Dataset> {
        let mut classes = Vec::new();
        let mut examples = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for e in std::fs::read_dir(root).map_err(io(root))? {
            let p = e.map_err(io(root))?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if has_image_extension(&p) {
                return Err(data_err(
                    root,
                    format!("{} is not inside a class folder; an image-label dataset is ROOT/CLASS/IMAGE", p.display()),
                ));
            }
        }
        dirs.sort();
        for dir in dirs {
            let name = dir.file_name().and_then(|n| n.to_str()).map(str::to_string).ok_or_else(|| {
                data_err(root, format!("class folder {} has a name that is not UTF-8", dir.display()))
            })?;
            let files = list_images(&dir)?;
            if files.is_empty() {
                continue;
            }
            let id = classes.len();
            classes.push(name);
            examples.extend(files.into_iter().map(|path| Example { path, target: Target::Class(id) }));
        }
        if examples.is_empty() {
            return Err(data_err(root, "no images in class sub-folders (expected ROOT/CLASS/IMAGE)"));
        }
        Ok(Dataset { examples, classes, templates: vec!["{}".into()] })
    }

    /// A JSON-lines caption file: `{"image": "rel/or/abs.png", "caption": "..."}` per line
    /// (`path`/`file` and `text` are accepted as synonyms). Blank lines are skipped; a line that
    /// is not such an object is an error naming the line.
    pub fn captions_jsonl(file: &Path) -> Result<Dataset> {
        let text = crate::files::read_text_file(file)?;
        let base = file.parent().unwrap_or(Path::new("."));
        let mut examples = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| data_err(file, format!("line {}: {e}", i + 1)))?;
            let field =
                |names: &[&str]| names.iter().find_map(|n| v.get(*n).and_then(|x| x.as_str()).map(str::to_string));
            let (Some(image), Some(caption)) = (field(&["image", "path", "file"]), field(&["caption", "text"])) else {
                return Err(data_err(file, format!("line {}: needs string fields \"image\" and \"caption\"", i + 1)));
            };
            examples.push(Example { path: base.join(image), target: Target::Caption(caption) });
        }
        if examples.is_empty() {
            return Err(data_err(file, "no examples"));
        }
        Ok(Dataset { examples, classes: Vec::new(), templates: vec!["{}".into()] })
    }

    /// A CSV caption file with a header row naming an `image` (or `path`, `filepath`) column and
    /// a `caption` (or `text`, `title`) column; RFC 4180 quoting, any other columns ignored.
    pub fn captions_csv(file: &Path) -> Result<Dataset> {
        let text = crate::files::read_text_file(file)?;
        let base = file.parent().unwrap_or(Path::new("."));
        let rows = parse_csv(&text).map_err(|e| data_err(file, e))?;
        let Some((header, body)) = rows.split_first() else {
            return Err(data_err(file, "empty CSV file"));
        };
        let col = |names: &[&str]| header.iter().position(|h| names.contains(&h.trim().to_ascii_lowercase().as_str()));
        let (Some(ci), Some(cc)) = (col(&["image", "path", "filepath"]), col(&["caption", "text", "title"])) else {
            return Err(data_err(file, format!("the header {header:?} needs an `image` and a `caption` column")));
        };
        let mut examples = Vec::new();
        for (i, row) in body.iter().enumerate() {
            if row.len() == 1 && row[0].is_empty() {
                continue;
            }
            let (Some(image), Some(caption)) = (row.get(ci), row.get(cc)) else {
                return Err(data_err(file, format!("row {} has {} fields, fewer than the header", i + 2, row.len())));
            };
            examples.push(Example { path: base.join(image), target: Target::Caption(caption.clone()) });
        }
        if examples.is_empty() {
            return Err(data_err(file, "no examples"));
        }
        Ok(Dataset { examples, classes: Vec::new(), templates: vec!["{}".into()] })
    }

    /// Several datasets as one stream: examples concatenated in order, class ids renumbered into
    /// one class list (a class name shared by two folders is one class).
    pub fn concat(parts: Vec<Dataset>, templates: Vec<String>) -> Dataset {
        let mut out = Dataset { templates, ..Default::default() };
        for part in parts {
            let map: Vec<usize> = part
                .classes
                .iter()
                .map(|c| match out.classes.iter().position(|x| x == c) {
                    Some(i) => i,
                    None => {
                        out.classes.push(c.clone());
                        out.classes.len() - 1
                    }
                })
                .collect();
            out.examples.extend(part.examples.into_iter().map(|e| Example {
                path: e.path,
                target: match e.target {
                    Target::Class(i) => Target::Class(map[i]),
                    t => t,
                },
            }));
        }
        out
    }

    /// The caption of example `i`, with `template` (index into the templates) for a class
    /// example, and its UniCL label.
    pub fn caption_and_label(&self, i: usize, template: usize) -> (String, u64) {
        match &self.examples[i].target {
            Target::Caption(c) => (c.clone(), label_for_text(c)),
            Target::Class(k) => {
                let name = &self.classes[*k];
                let t = &self.templates[template % self.templates.len().max(1)];
                // The class label is the class name in its own namespace, so every template of a
                // class is one positive set (UniCL's class-id targets).
                (t.replacen("{}", name, 1), label_for_text(&format!("\u{1}class:{name}")))
            }
        }
    }
}

/// RFC 4180 CSV: fields separated by commas, optionally quoted with `"`, quotes doubled inside
/// quoted fields, CRLF or LF line ends.
pub fn parse_csv(text: &str) -> std::result::Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut line = 1;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                line += 1;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(format!("unterminated quoted field starting before line {line}"));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        let rows = parse_csv("image,caption\r\na.png,\"a \"\"big\"\", red\nthing\"\nb.png,plain\n").unwrap();
        assert_eq!(
            rows,
            vec![
                vec!["image".to_string(), "caption".into()],
                vec!["a.png".into(), "a \"big\", red\nthing".into()],
                vec!["b.png".into(), "plain".into()],
            ]
        );
        assert!(parse_csv("a,\"open").is_err());
    }

    #[test]
    fn class_and_caption_labels() {
        let d = Dataset {
            examples: vec![
                Example { path: "x".into(), target: Target::Class(0) },
                Example { path: "y".into(), target: Target::Caption("a cat".into()) },
            ],
            classes: vec!["cat".into()],
            templates: vec!["a {}".into(), "a photo of a {}".into()],
        };
        let (c0, l0) = d.caption_and_label(0, 0);
        let (c1, l1) = d.caption_and_label(0, 1);
        let (c2, l2) = d.caption_and_label(1, 0);
        assert_eq!((c0.as_str(), c1.as_str(), c2.as_str()), ("a cat", "a photo of a cat", "a cat"));
        assert_eq!(l0, l1);
        assert_ne!(l0, l2, "a class and a caption that reads the same are different labels");
    }
}
