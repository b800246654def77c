//! `perch pull NAME_OR_URL`, and the pull-on-first-use that `run`, `chat` and `serve` do for a
//! model argument that is a URL or an `hf.co/OWNER/REPO[:QUANT]` reference.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use perch_store::pull::{PullEvent, PullOptions, Reference, pulled};
use perch_store::{Entry, Store};

/// Arguments of `perch pull`.
#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// A Hugging Face repository, `hf.co/OWNER/REPO[:QUANT]` (default quantization Q4_K_M;
    /// `$PERCH_HF_ENDPOINT` and `$HF_TOKEN` apply), or the URL of a GGUF file.
    pub reference: String,
}

/// Run the command.
pub fn run(args: PullArgs) -> Result<()> {
    let store = crate::store::open()?;
    let entry = pull(&store, &args.reference)?;
    println!(
        "{}  sha256:{}  {:.1} MB",
        entry.name,
        &entry.manifest.sha256[..12],
        entry.manifest.size as f64 / 1e6
    );
    Ok(())
}

/// Pull `reference` into `store`, with a progress bar on standard error.
pub fn pull(store: &Store, reference: &str) -> Result<Entry> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:24} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid progress template"),
    );
    let mut last_status = String::new();
    let result = store.pull(reference, &PullOptions::from_env(), &mut |ev| {
        let status = ev.status();
        if let PullEvent::Downloading {
            total, completed, ..
        } = ev
        {
            if *total > 0 {
                bar.set_length(*total);
            }
            bar.set_position(*completed);
        }
        if status != last_status {
            bar.set_message(status.clone());
            if !matches!(ev, PullEvent::Downloading { .. }) {
                bar.println(&status);
            }
            last_status = status;
        }
    });
    bar.finish_and_clear();
    result.with_context(|| format!("pulling {reference}"))
}

/// The store entry for a model argument that is a pull reference: the pulled model, pulled
/// now if it is not in the store yet. `None` when `arg` is not a reference.
pub fn ensure(store: &Store, arg: &str) -> Result<Option<Entry>> {
    let Some(parsed) = Reference::parse(arg) else {
        return Ok(None);
    };
    parsed?;
    if let Some(e) = pulled(store, arg)? {
        return Ok(Some(e));
    }
    eprintln!("perch: {arg} is not in the store yet; pulling it");
    pull(store, arg).map(Some)
}
