//! `dare keygen`: an Ed25519 signing key and its C2SP note verifier key, or
//! (`--witness`) a witness's `cosignature/v1` key, or (`--encryption`) an age
//! X25519 identity and its recipient, for private channels.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dare_container::cosign::WitnessSigningKey;
use dare_container::crypt::Identities;
use dare_container::keys::SigningKey;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the signing key (mode 0600); the verifier key goes to KEY.pub.
    #[arg(long, value_name = "KEY")]
    out: PathBuf,
    /// The key's name in signatures (default: the file name without extension).
    #[arg(long)]
    name: Option<String>,
    /// Overwrite existing key files.
    #[arg(long)]
    force: bool,
    /// Make a witness's key (for `dare witness`): KEY.pub is its C2SP cosignature/v1 verifier key, the form
    /// `--witness` takes.
    #[arg(long, conflicts_with = "encryption")]
    witness: bool,
    /// Make an age X25519 identity (`AGE-SECRET-KEY-1...`) for reading private channels: KEY.pub is its
    /// recipient (`age1...`), the form `dare publish --encrypt-to` takes.
    #[arg(long, conflicts_with = "name")]
    encryption: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.encryption {
        return encryption(&a);
    }
    let name = match &a.name {
        Some(n) => n.clone(),
        None => a
            .out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .context("--out has no file name to take the key name from; pass --name")?,
    };
    let pub_path = refuse_overwrite(&a)?;
    let (secret, verifier) = if a.witness {
        let key = WitnessSigningKey::generate(&name).context("generating the key")?;
        (key.to_text(), key.verifier().to_string())
    } else {
        let key = SigningKey::generate(&name).context("generating the key")?;
        (key.to_text(), key.verifier().to_string())
    };
    write_atomic(&a.out, format!("{secret}\n").as_bytes(), 0o600, a.force)?;
    write_atomic(&pub_path, format!("{verifier}\n").as_bytes(), 0o644, a.force)?;
    crate::outln!("{verifier}");
    Ok(())
}

/// An age identity file (as `age-keygen` writes it: a `# public key:` comment,
/// then the secret) and its recipient in KEY.pub.
fn encryption(a: &Args) -> Result<()> {
    let pub_path = refuse_overwrite(a)?;
    let id = Identities::generate();
    let recipient = id.recipients().to_strings().concat();
    write_atomic(&a.out, id.to_file_text().as_bytes(), 0o600, a.force)?;
    write_atomic(&pub_path, format!("{recipient}\n").as_bytes(), 0o644, a.force)?;
    crate::outln!("{recipient}");
    Ok(())
}

/// KEY.pub, once neither it nor KEY exists (or `--force` is given).
fn refuse_overwrite(a: &Args) -> Result<PathBuf> {
    let pub_path = pub_path(&a.out);
    if !a.force {
        for p in [&a.out, &pub_path] {
            if p.exists() {
                bail!("{} already exists; pass --force to overwrite it", p.display());
            }
        }
    }
    Ok(pub_path)
}

fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_os_string();
    s.push(".pub");
    PathBuf::from(s)
}

/// Writes a file whole or not at all, with `mode` from the start.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f =
            dare_container::fsys::create_new(&tmp, mode).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
        if replace {
            std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        } else {
            std::fs::hard_link(&tmp, path)
                .with_context(|| format!("writing {} (it may already exist)", path.display()))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}
