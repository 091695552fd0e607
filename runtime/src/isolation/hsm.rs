//! The files of a PKCS#11 signing key (`[signing.pkcs11]`): its PIN file,
//! the module stele loads on the host, and — for SoftHSM, whose "token" is
//! a folder of files — its configuration and token folder. A workspace
//! that holds the PIN file and the token folder hands a sandboxed program
//! the key itself; one that holds the module or SoftHSM's configuration
//! lets it choose the code stele loads or the token it signs with.

use std::path::{Path, PathBuf};

use super::{Kind, Location};
use crate::config::Layers;

/// SoftHSM's configuration when `SOFTHSM2_CONF` is not set.
const SOFTHSM_DEFAULT_CONF: &str = "/etc/softhsm/softhsm2.conf";

/// The locations of the configured token key, if there is one.
pub fn locations(layers: &Layers) -> Vec<Location> {
    let Some((_, cfg)) = layers.signing_pkcs11() else {
        return Vec::new();
    };
    let mut v = vec![Location::new(Kind::Pkcs11Module, cfg.module.clone())];
    if let Some(pin) = &cfg.pin_file {
        v.push(Location::new(Kind::Pkcs11Pin, pin.clone()));
    }
    let conf = match std::env::var_os("SOFTHSM2_CONF") {
        Some(c) if !c.is_empty() => Some(PathBuf::from(c)),
        _ if is_softhsm(&cfg.module) => Some(PathBuf::from(SOFTHSM_DEFAULT_CONF)),
        _ => None,
    };
    if let Some(conf) = conf {
        if let Some(dir) = std::fs::read_to_string(&conf)
            .ok()
            .and_then(|t| token_dir(&t))
        {
            v.push(Location::new(Kind::HsmTokens, dir));
        }
        v.push(Location::new(Kind::HsmConfig, conf));
    }
    v
}

fn is_softhsm(module: &Path) -> bool {
    module
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains("softhsm"))
}

/// `directories.tokendir` of a SoftHSM configuration (`key = value` lines,
/// `#` comments), when it is an absolute path.
fn token_dir(conf: &str) -> Option<PathBuf> {
    conf.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == "directories.tokendir")
        .map(|(_, v)| PathBuf::from(v.trim()))
        .rfind(|p| p.is_absolute())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_folder_is_read_from_softhsms_configuration() {
        let conf = "# SoftHSM v2\ndirectories.tokendir = /var/lib/softhsm/tokens/\n\
                    objectstore.backend = file\n";
        assert_eq!(
            token_dir(conf),
            Some(PathBuf::from("/var/lib/softhsm/tokens/"))
        );
        assert_eq!(token_dir("#directories.tokendir = /x\n"), None);
        assert_eq!(token_dir("directories.tokendir = relative\n"), None);
        assert_eq!(
            token_dir("directories.tokendir=/a\ndirectories.tokendir = /b\n"),
            Some(PathBuf::from("/b"))
        );
        assert!(is_softhsm(Path::new("/usr/lib/softhsm/libsofthsm2.so")));
        assert!(!is_softhsm(Path::new("/opt/luna/libCryptoki2_64.so")));
    }
}
