//! `perch keys`: manage a key file for `perch serve --api-key-file`. Keys are generated from
//! the OS's random source, printed once, and only their sha256 is stored.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use perch_server::auth::keys::{Key, Role, generate_secret, hash_key, parse_key_file};

/// Arguments of `perch keys`.
#[derive(clap::Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(clap::Subcommand, Debug)]
enum KeysCommand {
    /// Generate a key, print it once and add its hash to the key file.
    Add {
        /// Who the key is for (shown in the audit log).
        name: String,
        /// `inference` (generation, embeddings, listing) or `admin` (everything).
        #[arg(long, default_value = "inference")]
        role: String,
        /// The key file (created with mode 0600 when missing).
        #[arg(long = "key-file")]
        key_file: PathBuf,
        /// Most requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Most tokens (prompt plus generated) per minute.
        #[arg(long)]
        tpm: Option<u64>,
    },
    /// List the keys in a key file (names, roles, limits; never secrets).
    List {
        /// The key file.
        #[arg(long = "key-file")]
        key_file: PathBuf,
    },
    /// Remove a key from a key file.
    Rm {
        /// The key's name.
        name: String,
        /// The key file.
        #[arg(long = "key-file")]
        key_file: PathBuf,
    },
}

fn read(path: &Path) -> Result<(String, Vec<Key>)> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let keys = parse_key_file(&text, path)?;
            Ok((text, keys))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((String::new(), Vec::new())),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Write `text` to `path` through a temporary file in the same folder (mode 0600), renamed.
fn write(path: &Path, text: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Run the command.
pub fn run(args: KeysArgs) -> Result<()> {
    match args.command {
        KeysCommand::Add {
            name,
            role,
            key_file,
            rpm,
            tpm,
        } => {
            let role: Role = role.parse()?;
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!("a key name must be non-empty without spaces, got `{name}`");
            }
            if rpm == Some(0) || tpm == Some(0) {
                bail!("--rpm and --tpm must be positive");
            }
            let (mut text, keys) = read(&key_file)?;
            if keys.iter().any(|k| k.name == name) {
                bail!(
                    "{} already has a key named `{name}` (remove it first with `perch keys rm`)",
                    key_file.display()
                );
            }
            let secret = generate_secret().context("cannot get random bytes from the OS")?;
            let key = Key {
                name,
                role,
                sha256: hash_key(&secret),
                rpm,
                tpm,
            };
            if text.is_empty() {
                text.push_str("# perch API keys: NAME ROLE SHA256 [rpm=N] [tpm=N]\n");
            } else if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&key.to_line());
            text.push('\n');
            write(&key_file, &text)?;
            eprintln!(
                "added `{}` ({}) to {}; the key is shown only now:",
                key.name,
                key.role,
                key_file.display()
            );
            println!("{secret}");
        }
        KeysCommand::List { key_file } => {
            let (_, keys) = read(&key_file)?;
            println!("{:<24} {:<10} {:>8} {:>10}", "NAME", "ROLE", "RPM", "TPM");
            let lim = |v: Option<u64>| v.map_or("-".to_string(), |n| n.to_string());
            for k in keys {
                println!(
                    "{:<24} {:<10} {:>8} {:>10}",
                    k.name,
                    k.role,
                    lim(k.rpm),
                    lim(k.tpm)
                );
            }
        }
        KeysCommand::Rm { name, key_file } => {
            let (text, keys) = read(&key_file)?;
            if !keys.iter().any(|k| k.name == name) {
                bail!("{} has no key named `{name}`", key_file.display());
            }
            let kept: String = text
                .lines()
                .filter(|l| l.split_whitespace().next() != Some(name.as_str()))
                .map(|l| format!("{l}\n"))
                .collect();
            write(&key_file, &kept)?;
            eprintln!("removed `{name}` from {}", key_file.display());
        }
    }
    Ok(())
}
