//! `florence weights`: the registry of known public checkpoints, for `--weights NAME`.

use std::process::ExitCode;

use anyhow::Result;
use florence::pretrained::{Entry, find, registry};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show one entry in full: its facts and the pages they come from.
    pub name: Option<String>,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn json(e: &Entry) -> Result<serde_json::Value> {
    // Through text, so that the f32 mean and std print as written (0.485, not 0.48500001430511475).
    let mut v: serde_json::Value = serde_json::from_str(&serde_json::to_string(e)?)?;
    v["downloadable"] = serde_json::Value::Bool(e.hub.is_some());
    Ok(v)
}

fn size(e: &Entry) -> String {
    e.size.map_or_else(|| "?".to_string(), |n| format!("{:.1} MB", n as f64 / 1e6))
}

fn how(e: &Entry) -> &'static str {
    if e.hub.is_some() { "hub, automatic" } else { "by hand" }
}

pub fn run(a: Args) -> Result<ExitCode> {
    let entries: Vec<&Entry> = match &a.name {
        Some(n) => vec![find(n)?],
        None => registry().iter().collect(),
    };
    if a.json {
        let v = match &a.name {
            Some(_) => json(entries[0])?,
            None => serde_json::Value::Array(entries.iter().map(|e| json(e)).collect::<Result<_>>()?),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if a.name.is_some() {
        detail(entries[0]);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            let sha = e.sha256.map_or_else(|| "-".to_string(), |h| format!("{}...", &h[..h.len().min(12)]));
            let text = [e.name, e.preset, e.file].map(str::to_string);
            let [name, preset, file] = text;
            [name, preset, file, size(e), sha, e.licence.to_string(), how(e).to_string()]
        })
        .collect();
    let header = ["name", "preset", "file", "size", "sha256", "licence", "download"].map(str::to_string);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    for e in registry() {
        for alias in e.aliases {
            println!("alias: {alias} = {}", e.name);
        }
    }
    println!(
        "size ?: not published exactly; sha256 -: not published (only what is known is checked). \
         `florence weights NAME` shows an entry and its sources; `--weights NAME` uses it."
    );
    Ok(ExitCode::SUCCESS)
}

fn detail(e: &Entry) {
    let p = &e.preprocess;
    println!("name:        {}", e.name);
    if !e.aliases.is_empty() {
        println!("aliases:     {}", e.aliases.join(", "));
    }
    println!("description: {}", e.description);
    println!("preset:      {}", e.preset);
    println!("file:        {}", e.file);
    println!("size:        {}", e.size.map_or_else(|| "not published exactly".to_string(), |n| format!("{n} bytes")));
    println!("sha256:      {}", e.sha256.unwrap_or("not published"));
    match e.hub {
        Some(h) => println!("hub:         {h}"),
        None => println!("hub:         not on the Hugging Face hub; download it by hand and pass the file"),
    }
    println!("download:    {}", e.download_page);
    println!(
        "preprocess:  shorter side to {} ({:?}), centre crop {}, mean {:?}, std {:?}",
        p.resize_shorter, p.filter, p.crop, p.mean, p.std
    );
    println!("licence:     {}. {}", e.licence, e.licence_note);
    for (i, s) in e.sources.iter().enumerate() {
        println!("{}{s}", if i == 0 { "sources:     " } else { "             " });
    }
}
