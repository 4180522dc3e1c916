//! Label lists: the bundled ImageNet-1K names and the checks a user's list must pass.

use std::collections::HashMap;

use crate::error::{FlorenceError, Result};

/// UniCL's `IMAGENET_CLASSES` (`data/imagenet/constants.py`): CLIP's curated ImageNet-1K names
/// with its two duplicates made unique ("projectile", "dark glasses"). Written by
/// `scripts/reference/make_zeroshot_data.py`.
const IMAGENET_CLASSES: &str = include_str!("../../assets/imagenet/classnames.txt");

/// The 1000 ImageNet-1K class names, in class-index order.
pub fn imagenet_classes() -> Vec<String> {
    IMAGENET_CLASSES.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// Splits a comma-separated list (`"cat, dog,car"`), trimming spaces around each label.
pub fn parse_label_list(list: &str) -> Vec<String> {
    list.split(',').map(|s| s.trim().to_string()).collect()
}

/// A classifier needs at least one label, no blank label and no label twice (two identical
/// labels would get identical embeddings and split the probability between them).
pub fn validate_labels(labels: &[String]) -> Result<()> {
    if labels.is_empty() {
        return Err(FlorenceError::Labels("the label list is empty: give at least one label".into()));
    }
    let limits = crate::limits::get();
    crate::limits::check("the number of labels", labels.len() as u64, limits.max_labels as u64, "max_labels")?;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, l) in labels.iter().enumerate() {
        crate::limits::check_bytes(
            format!("label {}", i + 1),
            l.len() as u64,
            limits.max_text_bytes as u64,
            "max_text_bytes",
        )?;
        if l.trim().is_empty() {
            return Err(FlorenceError::Labels(format!(
                "label {} is blank; remove it (a trailing comma in --labels makes one)",
                i + 1
            )));
        }
        if let Some(first) = seen.insert(l.as_str(), i) {
            return Err(FlorenceError::Labels(format!(
                "label `{l}` appears twice (positions {} and {}); labels must be unique",
                first + 1,
                i + 1
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_has_1000_unique_names() {
        let c = imagenet_classes();
        assert_eq!(c.len(), 1000);
        assert_eq!(c[0], "tench");
        assert_eq!(c[744], "projectile");
        assert_eq!(c[837], "dark glasses");
        assert_eq!(c[999], "toilet paper");
        validate_labels(&c).unwrap();
    }

    #[test]
    fn bad_label_lists() {
        assert!(validate_labels(&[]).is_err());
        let e = validate_labels(&parse_label_list("cat,dog,")).unwrap_err().to_string();
        assert!(e.contains("label 3 is blank"), "{e}");
        let e = validate_labels(&parse_label_list("cat, dog, cat")).unwrap_err().to_string();
        assert!(e.contains("`cat` appears twice (positions 1 and 3)"), "{e}");
        assert_eq!(parse_label_list(" a photo ,b"), vec!["a photo", "b"]);
    }
}
