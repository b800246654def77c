//! The model store commands: `perch list`, `show`, `import`, `create`, `cp`, `rm`, and the
//! resolution of a `MODEL` argument (a file, or a name in the store).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use perch_store::{Entry, Source, Store, parse_modelfile};

/// The store at `$PERCH_HOME` (or the user's data folder).
pub fn open() -> Result<Store> {
    Ok(Store::default_location()?)
}

/// A `MODEL` argument: an existing file as it is, otherwise a model in the store.
pub fn resolve(arg: &str) -> Result<(PathBuf, Option<Entry>)> {
    if Path::new(arg).is_file() {
        return Ok((PathBuf::from(arg), None));
    }
    // A URL or hf.co/... reference: the pulled model, pulled now on first use.
    let store = open()?;
    if let Some(entry) = crate::pull::ensure(&store, arg)? {
        return Ok((entry.path.clone(), Some(entry)));
    }
    // Something that can only be a path (absolute, explicitly relative, a `.gguf` or `.onnx`
    // file)
    // gets the file system's own answer rather than the store's.
    let is_path = ["/", "./", "../"].iter().any(|p| arg.starts_with(p))
        || arg.ends_with(".gguf")
        || arg.ends_with(".onnx");
    if is_path {
        let why = match std::fs::metadata(arg) {
            Err(e) => e.to_string(),
            Ok(_) => "not a regular file".to_string(),
        };
        anyhow::bail!("cannot open model file {arg}: {why}");
    }
    let entry = store
        .get(arg)
        .with_context(|| format!("`{arg}` is neither a file nor a model in the store (models can be pulled with `perch pull hf.co/OWNER/REPO[:QUANT]`)"))?;
    Ok((entry.path.clone(), Some(entry)))
}

/// `perch import FILE [NAME]`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The GGUF file.
    pub file: PathBuf,
    /// The name (`name[:tag]`; default: the file name without `.gguf`).
    pub name: Option<String>,
    /// Reference the file where it is instead of copying it into the store.
    #[arg(long = "no-copy")]
    pub no_copy: bool,
}

/// `perch create NAME -f Modelfile`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The new model's name.
    pub name: String,
    /// The Modelfile (FROM, PARAMETER, SYSTEM, TEMPLATE).
    #[arg(long = "file", short = 'f', default_value = "Modelfile")]
    pub file: PathBuf,
}

/// `perch show NAME`.
#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// The model.
    pub name: String,
}

/// `perch cp SOURCE DESTINATION`.
#[derive(clap::Args, Debug)]
pub struct CopyArgs {
    /// The model to copy.
    pub source: String,
    /// The new name.
    pub destination: String,
}

/// `perch rm NAME...`.
#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// The models to remove.
    #[arg(required = true)]
    pub names: Vec<String>,
}

fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / 1e9),
        n if n >= 1 << 20 => format!("{:.0} MB", n as f64 / 1e6),
        n => format!("{:.0} KB", n as f64 / 1e3),
    }
}

/// `perch list`.
pub fn list() -> Result<()> {
    let store = open()?;
    let entries = store.list()?;
    if entries.is_empty() {
        eprintln!(
            "no models in {} (add one with `perch import FILE.gguf`)",
            store.root().display()
        );
        return Ok(());
    }
    println!("{:<40} {:<14} {:>8}", "NAME", "ID", "SIZE");
    for e in entries {
        println!(
            "{:<40} {:<14} {:>8}",
            e.name.to_string(),
            &e.manifest.sha256[..12],
            human_size(e.manifest.size)
        );
    }
    Ok(())
}

/// `perch show NAME`.
pub fn show(args: ShowArgs) -> Result<()> {
    let e = open()?.get(&args.name)?;
    println!("name        {}", e.name);
    println!("file        {}", e.path.display());
    let kind = match e.manifest.source {
        Source::Blob => "copied into the store",
        Source::Path(_) => "referenced in place",
    };
    println!("stored      {kind}");
    println!("sha256      {}", e.manifest.sha256);
    println!("size        {}", human_size(e.manifest.size));
    for (k, v) in &e.manifest.parameters {
        println!("parameter   {k} {v}");
    }
    if let Some(s) = &e.manifest.system {
        println!("system      {s}");
    }
    if e.manifest.template.is_some() {
        println!("template    (custom Jinja chat template)");
    }
    Ok(())
}

/// `perch import FILE [NAME]`.
pub fn import(args: ImportArgs) -> Result<()> {
    let name = match args.name {
        Some(n) => n,
        None => {
            let stem = args
                .file
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            stem.strip_suffix(".gguf")
                .map(str::to_string)
                .unwrap_or(stem)
        }
    };
    if perch_onnx::is_onnx_file(&args.file) {
        anyhow::bail!(
            "{} is an ONNX model; the store holds GGUF files. Serve an ONNX embedding model \
             from its folder (tokenizer.json beside it) with `perch serve --model {}`, or \
             convert the Hugging Face folder to GGUF with `perch convert`",
            args.file.display(),
            args.file.display()
        );
    }
    let e = open()?.import(&args.file, &name, !args.no_copy)?;
    println!("imported {} ({})", e.name, human_size(e.manifest.size));
    Ok(())
}

/// `perch create NAME -f Modelfile`.
pub fn create(args: CreateArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mf = parse_modelfile(&text).with_context(|| args.file.display().to_string())?;
    let base = args.file.parent().unwrap_or(Path::new("."));
    let e = open()?.create(&args.name, &mf, base)?;
    println!("created {}", e.name);
    Ok(())
}

/// `perch cp SOURCE DESTINATION`.
pub fn copy(args: CopyArgs) -> Result<()> {
    let e = open()?.copy(&args.source, &args.destination)?;
    println!("copied {} to {}", args.source, e.name);
    Ok(())
}

/// `perch rm NAME...`.
pub fn remove(args: RemoveArgs) -> Result<()> {
    let store = open()?;
    for n in &args.names {
        store.remove(n)?;
        println!("removed {n}");
    }
    Ok(())
}

/// `perch verify [NAME...]`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Models to check (default: every model in the store).
    pub names: Vec<String>,
}

/// Leftovers of writes killed at least this long ago are removed by `verify` and `serve`
/// (a live write touches its file far more often).
pub const PARTIAL_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// `perch verify`: hash every model file and compare with its manifest; remove the leftovers
/// of killed writes. Fails when any model does not match.
pub fn verify(args: VerifyArgs) -> Result<()> {
    let store = open()?;
    for p in store.sweep_partials(PARTIAL_MIN_AGE)? {
        eprintln!("removed an unfinished write: {}", p.display());
    }
    let names = if args.names.is_empty() {
        list_names(&store)?
    } else {
        args.names
    };
    let mut bad = 0;
    for name in &names {
        match store.verify(name) {
            Ok(v) if v.ok => println!("{}  ok  sha256:{}", v.name, v.actual),
            Ok(v) => {
                bad += 1;
                println!(
                    "{}  CHANGED  {}: sha256 {} ({} bytes), manifest has {} ({} bytes)",
                    v.name,
                    v.path.display(),
                    v.actual,
                    v.size,
                    v.expected,
                    v.expected_size
                );
            }
            Err(e) => {
                bad += 1;
                println!("{name}  FAILED  {e}");
            }
        }
    }
    if bad > 0 {
        anyhow::bail!("{bad} of {} models failed verification", names.len());
    }
    Ok(())
}

/// Every manifest's name, including models whose file no longer checks out (which
/// `Store::list` skips).
fn list_names(store: &Store) -> Result<Vec<String>> {
    let dir = store.root().join("manifests");
    let mut out = Vec::new();
    let Ok(names) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for n in names.flatten() {
        let Ok(tags) = std::fs::read_dir(n.path()) else {
            continue;
        };
        for t in tags.flatten() {
            let p = t.path();
            if p.extension().is_some_and(|e| e == "json") {
                if let (Some(name), Some(tag)) = (
                    n.file_name().to_str(),
                    p.file_stem().and_then(|s| s.to_str()),
                ) {
                    out.push(format!("{name}:{tag}"));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}
