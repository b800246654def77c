//! `perch deploy dockerfile --model NAME`: a Docker build context that bakes a model of the
//! store into an image, as Ollama users expect: the model file, a Modelfile with its
//! parameters, system prompt and template, and a Dockerfile on top of the `perch` image
//! (built from the repository's Dockerfile) that creates the model in the image's store and
//! serves it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// Arguments of `perch deploy`.
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    #[command(subcommand)]
    what: DeployWhat,
}

#[derive(clap::Subcommand, Debug)]
enum DeployWhat {
    /// Write a Docker build context (Dockerfile, Modelfile, model file) serving one model.
    Dockerfile {
        /// The model in the store.
        #[arg(long, short = 'm')]
        model: String,
        /// The folder to write (default: `perch-<name>`); its Dockerfile is `-o/Dockerfile`.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// The perch image to build on.
        #[arg(long, default_value = "perch:latest")]
        base: String,
        /// Copy the model file instead of hard-linking it.
        #[arg(long)]
        copy: bool,
    },
}

fn quoted(s: &str) -> Result<String> {
    if s.contains("\"\"\"") {
        bail!("a system prompt or template containing \"\"\" cannot be written to a Modelfile");
    }
    Ok(format!("\"\"\"{s}\"\"\""))
}

/// The Modelfile recreating `e` from `./model.gguf`.
fn modelfile(e: &perch_store::Entry) -> Result<String> {
    let mut out = String::from("FROM ./model.gguf\n");
    for (k, v) in &e.manifest.parameters {
        match v {
            serde_json::Value::Array(items) => {
                for i in items {
                    out.push_str(&format!(
                        "PARAMETER {k} {}\n",
                        i.as_str().unwrap_or_default()
                    ));
                }
            }
            serde_json::Value::String(s) => out.push_str(&format!("PARAMETER {k} {s}\n")),
            other => out.push_str(&format!("PARAMETER {k} {other}\n")),
        }
    }
    if let Some(s) = &e.manifest.system {
        out.push_str(&format!("SYSTEM {}\n", quoted(s)?));
    }
    if let Some(t) = &e.manifest.template {
        out.push_str(&format!("TEMPLATE {}\n", quoted(t)?));
    }
    Ok(out)
}

/// The Dockerfile serving `name` from the image's store.
pub fn dockerfile(name: &str, base: &str, size: u64) -> String {
    let mib = size.div_ceil(1 << 20);
    format!(
        "# Serves `{name}` with perch. Build: docker build -t perch-{tag} .\n\
         # Run:   docker run -p 8080:8080 perch-{tag}\n\
         # Memory: the model maps {mib} MiB; add the KV cache (--kv-memory, or parallel x ctx)\n\
         # and ~256 MiB, e.g. a limit of {limit} MiB with the defaults.\n\
         FROM {base}\n\
         COPY --chown=10001:10001 model.gguf Modelfile /data/build/\n\
         RUN perch create {name} -f /data/build/Modelfile && rm -rf /data/build\n\
         EXPOSE 8080\n\
         HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \\\n    \
         CMD [\"curl\", \"-fsS\", \"-o\", \"/dev/null\", \"http://127.0.0.1:8080/health\"]\n\
         CMD [\"serve\", \"--host\", \"0.0.0.0\", \"--port\", \"8080\", \"--model\", \"{name}\"]\n",
        tag = name.replace(':', "-"),
        limit = mib + 512 + 256,
    )
}

/// Run the command.
pub fn run(args: DeployArgs) -> Result<()> {
    match args.what {
        DeployWhat::Dockerfile {
            model,
            output,
            base,
            copy,
        } => {
            let store = crate::store::open()?;
            let e = store.get(&model)?;
            let name = e.name.to_string();
            let dir = output.unwrap_or_else(|| PathBuf::from(format!("perch-{}", e.name.name)));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let model_dst = dir.join("model.gguf");
            let _ = std::fs::remove_file(&model_dst);
            if copy || std::fs::hard_link(&e.path, &model_dst).is_err() {
                std::fs::copy(&e.path, &model_dst).with_context(|| {
                    format!(
                        "cannot copy {} to {}",
                        e.path.display(),
                        model_dst.display()
                    )
                })?;
            }
            write_atomic(&dir.join("Modelfile"), &modelfile(&e)?)?;
            write_atomic(
                &dir.join("Dockerfile"),
                &dockerfile(&name, &base, e.manifest.size),
            )?;
            println!(
                "wrote {}/Dockerfile (with Modelfile and model.gguf); build it with \
                 `docker build -t perch-{} {}` on top of `{base}`",
                dir.display(),
                e.name.name,
                dir.display()
            );
        }
    }
    Ok(())
}

fn write_atomic(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
