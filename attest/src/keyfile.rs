//! Private key files.
//!
//! The format is the signed-note signer key text form,
//! `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>` followed by a newline.
//! Files are created with mode 0600 (folders 0700, whatever the umask) and
//! refused if group or others can read them.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::error::AttestError;
use crate::note::{key_id, valid_key_name, ALG_ED25519};
use crate::signer::{Ed25519Signer, Signer as _};

const PREFIX: &str = "PRIVATE+KEY+";

/// Create a new key named `name` at `path` (refuses to overwrite).
pub fn generate_key_file(path: &Path, name: &str) -> Result<Ed25519Signer, AttestError> {
    let signer = Ed25519Signer::generate(name)?;
    let io = |source| AttestError::KeyIo {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private_fs::create_dir_all(dir).map_err(io)?;
    }
    let mut raw = vec![ALG_ED25519];
    raw.extend_from_slice(&signer.seed());
    let text = format!(
        "{PREFIX}{name}+{}+{}\n",
        hex::encode(key_id(name, &signer.public_key())),
        B64.encode(&raw)
    );
    let mut f = crate::private_fs::create_new_file(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(signer)
}

/// Load the key at `path`, checking its permissions and format.
pub fn load_key_file(path: &Path) -> Result<Ed25519Signer, AttestError> {
    let io = |source| AttestError::KeyIo {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AttestError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = fs::read_to_string(path).map_err(io)?;
    parse_key_text(text.trim_end_matches('\n')).map_err(|reason| AttestError::KeyFormat {
        path: Some(path.to_path_buf()),
        reason,
    })
}

fn parse_key_text(text: &str) -> Result<Ed25519Signer, String> {
    let rest = text
        .strip_prefix(PREFIX)
        .ok_or("does not start with PRIVATE+KEY+")?;
    // Names never contain '+', base64 may: split from the left.
    let mut parts = rest.splitn(3, '+');
    let (Some(name), Some(hash), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected PRIVATE+KEY+name+hash+base64".into());
    };
    if !valid_key_name(name) {
        return Err(format!("invalid key name {name:?}"));
    }
    let raw = B64
        .decode(b64)
        .map_err(|_| "key is not valid base64".to_string())?;
    if raw.len() != 33 || raw[0] != ALG_ED25519 {
        return Err("not an Ed25519 key (type 0x01, 32 bytes)".into());
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&raw[1..]);
    let signer = Ed25519Signer::from_seed(name, &seed).map_err(|e| e.to_string())?;
    if hex::encode(signer.key_id()) != hash {
        return Err("key hash does not match the name and key".into());
    }
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys/log.key");
        let s = generate_key_file(&p, "audit.example/log").unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let l = load_key_file(&p).unwrap();
        assert_eq!(l.public_key(), s.public_key());
        assert!(generate_key_file(&p, "x").is_err(), "must not overwrite");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_key_file(&p),
            Err(AttestError::KeyPermissions { .. })
        ));
    }

    #[test]
    fn garbage_rejected_with_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        fs::write(&p, "hello").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_key_file(&p).unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(matches!(
            load_key_file(&dir.path().join("missing")),
            Err(AttestError::KeyIo { .. })
        ));
    }
}
