//! Prompt templates: the 81 UniCL ImageNet templates, CLIP's 7-template short set, none, or a
//! user file.

use std::path::{Path, PathBuf};

use crate::error::{FlorenceError, Result};

/// `'{}.'` followed by CLIP's 80 ImageNet templates: UniCL's `IMAGENET_DEFAULT_TEMPLATES`
/// (`data/imagenet/constants.py`), written by `scripts/reference/make_zeroshot_data.py`.
const IMAGENET: &str = include_str!("../../assets/imagenet/templates_imagenet.txt");
/// CLIP's short 7-template ensemble (open_clip `SIMPLE_IMAGENET_TEMPLATES`).
const SIMPLE: &str = include_str!("../../assets/imagenet/templates_simple.txt");

/// Which prompt templates turn a label into texts. Every template holds exactly one `{}`, which
/// the label replaces (Python's `template.format(label)`, as UniCL calls it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Templates {
    /// UniCL's 81 ImageNet templates (what its published zero-shot numbers use).
    ImageNet,
    /// CLIP's 7 short templates (`itap of a {}.`, ...): 11x cheaper to build.
    Simple,
    /// The label itself is the only prompt.
    None,
    /// Templates given by the user, each with one `{}`.
    Custom(Vec<String>),
}

impl Templates {
    /// `imagenet`, `simple`, `none`, or the path of a file with one template per line (blank lines
    /// and lines starting with `#` are skipped).
    pub fn parse(spec: &str) -> Result<Self> {
        match spec {
            "imagenet" => Ok(Self::ImageNet),
            "simple" => Ok(Self::Simple),
            "none" => Ok(Self::None),
            path => {
                let path = PathBuf::from(path);
                if !path.exists() {
                    return Err(FlorenceError::Labels(format!(
                        "templates `{spec}` are neither `imagenet`, `simple`, `none` nor an existing file"
                    )));
                }
                Self::from_file(&path)
            }
        }
    }

    /// Reads a template file: one template per line, each with exactly one `{}`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::files::read_text_file(path)?;
        let list = parse_lines(&text);
        let t = Self::Custom(list);
        t.validate().map_err(|e| FlorenceError::Labels(format!("{}: {e}", path.display())))?;
        Ok(t)
    }

    /// The template strings.
    pub fn strings(&self) -> Vec<String> {
        match self {
            Self::ImageNet => parse_lines(IMAGENET),
            Self::Simple => parse_lines(SIMPLE),
            Self::None => vec!["{}".to_string()],
            Self::Custom(list) => list.clone(),
        }
    }

    /// Checks that there is at least one template and that each has exactly one `{}`.
    pub fn validate(&self) -> Result<()> {
        let list = self.strings();
        if list.is_empty() {
            return Err(FlorenceError::Labels("no prompt templates: give at least one line with a `{}`".into()));
        }
        let limits = crate::limits::get();
        crate::limits::check(
            "the number of prompt templates",
            list.len() as u64,
            limits.max_templates as u64,
            "max_templates",
        )?;
        for (i, t) in list.iter().enumerate() {
            let n = t.matches("{}").count();
            if n != 1 {
                return Err(FlorenceError::Labels(format!(
                    "template {} `{t}` has {n} `{{}}` placeholders; each template needs exactly one, where the label goes",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    /// The prompts for one label, in template order.
    pub fn apply(&self, label: &str) -> Vec<String> {
        self.strings().iter().map(|t| t.replacen("{}", label, 1)).collect()
    }

    /// A short name for reports and saved classifiers.
    pub fn name(&self) -> String {
        match self {
            Self::ImageNet => "imagenet".into(),
            Self::Simple => "simple".into(),
            Self::None => "none".into(),
            Self::Custom(l) => format!("custom ({} templates)", l.len()),
        }
    }
}

fn parse_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_sets_are_the_reference_ones() {
        let t = Templates::ImageNet.strings();
        assert_eq!(t.len(), 81);
        assert_eq!(t[0], "{}.");
        assert_eq!(t[1], "a bad photo of a {}.");
        assert_eq!(t[80], "a tattoo of the {}.");
        assert_eq!(Templates::Simple.strings().len(), 7);
        assert_eq!(Templates::None.apply("cat"), vec!["cat"]);
        Templates::ImageNet.validate().unwrap();
        Templates::Simple.validate().unwrap();
    }

    #[test]
    fn apply_formats_like_python() {
        assert_eq!(Templates::Simple.apply("dog")[0], "itap of a dog.");
        // A label with braces is inserted literally (Python's format does not re-scan it).
        assert_eq!(Templates::None.apply("{x}"), vec!["{x}"]);
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(Templates::Custom(vec![]).validate().is_err());
        assert!(Templates::Custom(vec!["a photo".into()]).validate().is_err());
        assert!(Templates::Custom(vec!["{} and {}".into()]).validate().is_err());
        assert!(Templates::parse("/no/such/templates.txt").is_err());
    }
}
