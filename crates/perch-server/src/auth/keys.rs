//! API keys: where they come from (flags, `PERCH_API_KEYS`, a key file of sha256 hashes),
//! their roles and limits, and the constant-time lookup of a presented key.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Generation, embeddings, listing and showing models, metrics.
    Inference,
    /// Everything, including creating, copying, deleting, pulling and pushing models,
    /// uploading blobs and unloading models.
    Admin,
}

impl Role {
    /// Its name in flags, key files and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Inference => "inference",
            Role::Admin => "admin",
        }
    }

    /// Whether a key of this role may do what `needed` requires.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::str::FromStr for Role {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Role, KeyError> {
        match s {
            "inference" => Ok(Role::Inference),
            "admin" => Ok(Role::Admin),
            other => Err(KeyError::Role(other.to_string())),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bad key specification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// An unknown role.
    #[error("unknown role `{0}` (the roles are `inference` and `admin`)")]
    Role(String),
    /// An empty key.
    #[error("an API key must not be empty")]
    Empty,
    /// A key file line that does not parse.
    #[error("{path}:{line}: {why}")]
    File {
        /// The key file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The key file cannot be read.
    #[error("cannot read the key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Two keys share a name.
    #[error("two API keys are named `{0}`")]
    Duplicate(String),
}

/// One API key: its name (for the audit log), role, the sha256 of its secret and its limits.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// Who the key belongs to.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// sha256 of the secret (the secret itself is never kept).
    pub sha256: [u8; 32],
    /// Most requests per minute.
    pub rpm: Option<u64>,
    /// Most tokens (prompt plus generated) per minute.
    pub tpm: Option<u64>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .finish_non_exhaustive()
    }
}

/// sha256 of a secret.
pub fn hash_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Constant-time equality of two hashes.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Key {
    /// A key from `--api-key` or `PERCH_API_KEYS`: `SECRET` (an admin key, as a single
    /// `--api-key` always was) or `SECRET:ROLE`. `name` labels it in the audit log.
    pub fn from_spec(spec: &str, name: String) -> Result<Key, KeyError> {
        let spec = spec.trim();
        let (secret, role) = match spec.rsplit_once(':') {
            Some((s, r)) if r == "admin" || r == "inference" => (s, r.parse()?),
            _ => (spec, Role::Admin),
        };
        if secret.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Key {
            name,
            role,
            sha256: hash_key(secret),
            rpm: None,
            tpm: None,
        })
    }

    /// A key file line: `NAME ROLE SHA256-HEX [rpm=N] [tpm=N]`.
    pub fn from_line(line: &str) -> Result<Key, String> {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("expected `NAME ROLE SHA256 [rpm=N] [tpm=N]`".into());
        };
        let role: Role = role.parse().map_err(|e: KeyError| e.to_string())?;
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(hash, &mut sha256)
            .map_err(|_| format!("`{hash}` is not a sha256 in 64 hex digits"))?;
        let mut key = Key {
            name: name.to_string(),
            role,
            sha256,
            rpm: None,
            tpm: None,
        };
        for p in parts {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("`{p}` is not `rpm=N` or `tpm=N`"))?;
            let n: u64 = v
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("`{k}` must be a positive integer, got `{v}`"))?;
            match k {
                "rpm" => key.rpm = Some(n),
                "tpm" => key.tpm = Some(n),
                _ => return Err(format!("unknown setting `{k}` (known: rpm, tpm)")),
            }
        }
        Ok(key)
    }

    /// This key as a key file line.
    pub fn to_line(&self) -> String {
        let mut s = format!("{} {} {}", self.name, self.role, hex::encode(self.sha256));
        if let Some(r) = self.rpm {
            s.push_str(&format!(" rpm={r}"));
        }
        if let Some(t) = self.tpm {
            s.push_str(&format!(" tpm={t}"));
        }
        s
    }
}

/// Parse a key file's text (`#` starts a comment line).
pub fn parse_key_file(text: &str, path: &Path) -> Result<Vec<Key>, KeyError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(Key::from_line(line).map_err(|why| KeyError::File {
            path: path.display().to_string(),
            line: i + 1,
            why,
        })?);
    }
    Ok(keys)
}

/// Read a key file.
pub fn read_key_file(path: &Path) -> Result<Vec<Key>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_key_file(&text, path)
}

/// Every key the server accepts. Empty means the server is open (no authentication).
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// A set of keys; names must be unique.
    pub fn new(keys: Vec<Key>) -> Result<KeySet, KeyError> {
        let mut names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(KeyError::Duplicate(w[0].to_string()));
        }
        Ok(KeySet { keys })
    }

    /// Keys from `--api-key` specs (named `flag-1`, `flag-2`, ...), `PERCH_API_KEYS`-style
    /// comma-separated specs (named `env-1`, ...) and a key file.
    pub fn gather(
        flags: &[String],
        env: Option<&str>,
        file: Option<&Path>,
    ) -> Result<KeySet, KeyError> {
        let mut keys = Vec::new();
        for (i, s) in flags.iter().enumerate() {
            keys.push(Key::from_spec(s, format!("flag-{}", i + 1))?);
        }
        if let Some(env) = env {
            for (i, s) in env.split(',').filter(|s| !s.trim().is_empty()).enumerate() {
                keys.push(Key::from_spec(s, format!("env-{}", i + 1))?);
            }
        }
        if let Some(f) = file {
            keys.extend(read_key_file(f)?);
        }
        KeySet::new(keys)
    }

    /// Whether no key is configured (the server is open).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The key whose secret is `secret`. Every key's hash is compared, each in constant time,
    /// so the time taken says nothing about which key nearly matched.
    pub fn find(&self, secret: &str) -> Option<&Key> {
        let h = hash_key(secret);
        let mut found = None;
        for k in &self.keys {
            if same(&k.sha256, &h) && found.is_none() {
                found = Some(k);
            }
        }
        found
    }
}

/// A new random secret: `perch-` and 48 hex digits (192 bits from the OS).
pub fn generate_secret() -> std::io::Result<String> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(format!("perch-{}", hex::encode(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_roles() {
        let k = Key::from_spec("abc", "a".into()).unwrap();
        assert_eq!(k.role, Role::Admin);
        let k = Key::from_spec("abc:inference", "a".into()).unwrap();
        assert_eq!(k.role, Role::Inference);
        assert_eq!(k.sha256, hash_key("abc"));
        // A colon that is not followed by a role is part of the secret.
        let k = Key::from_spec("a:b", "a".into()).unwrap();
        assert_eq!(k.sha256, hash_key("a:b"));
        assert!(Key::from_spec(":admin", "a".into()).is_err());
        assert!(Role::Admin.allows(Role::Inference));
        assert!(!Role::Inference.allows(Role::Admin));
    }

    #[test]
    fn key_file_lines() {
        let text = "# keys\n\nalice admin 1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0 rpm=10\n";
        let keys = parse_key_file(text, Path::new("k")).unwrap();
        assert_eq!(keys[0].name, "alice");
        assert_eq!(keys[0].rpm, Some(10));
        assert_eq!(keys[0].tpm, None);
        let line = keys[0].to_line();
        assert_eq!(Key::from_line(&line).unwrap(), keys[0]);
        let e = parse_key_file("bob admin nothex\n", Path::new("k")).unwrap_err();
        assert!(e.to_string().contains("k:1"), "{e}");
        let e = parse_key_file("bob root 00\n", Path::new("k")).unwrap_err();
        assert!(e.to_string().contains("unknown role"), "{e}");
        let e = Key::from_line(&format!("b admin {} rpm=0", "0".repeat(64))).unwrap_err();
        assert!(e.contains("positive"), "{e}");
    }

    #[test]
    fn sha256_matches_coreutils() {
        // `printf s3cret | sha256sum`
        assert_eq!(
            hex::encode(hash_key("s3cret")),
            "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"
        );
    }

    #[test]
    fn lookup_and_duplicates() {
        let set = KeySet::gather(
            &["one".into(), "two:inference".into()],
            Some("three, four:admin"),
            None,
        )
        .unwrap();
        assert_eq!(set.keys().len(), 4);
        assert_eq!(set.find("two").unwrap().name, "flag-2");
        assert_eq!(set.find("four").unwrap().name, "env-2");
        assert!(set.find("five").is_none());
        let k = Key::from_spec("x", "same".into()).unwrap();
        assert!(KeySet::new(vec![k.clone(), k]).is_err());
        let s = generate_secret().unwrap();
        assert_eq!(s.len(), 6 + 48);
        assert_ne!(s, generate_secret().unwrap());
    }
}
