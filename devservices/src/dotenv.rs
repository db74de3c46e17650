//! `.env` loading where the environment wins: a variable already set keeps its value.

use std::path::Path;

use anyhow::Context;

/// The entries of `path` that `is_set` does not claim, in file order; none when there is no file.
pub fn entries_to_set(
    path: &Path,
    is_set: impl Fn(&str) -> bool,
) -> anyhow::Result<Vec<(String, String)>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let iter =
        dotenvy::from_path_iter(path).with_context(|| format!("reading {}", path.display()))?;
    let mut entries = Vec::new();
    for item in iter {
        let (key, value) = item.with_context(|| format!("parsing {}", path.display()))?;
        if !is_set(&key) {
            entries.push((key, value));
        }
    }
    Ok(entries)
}

/// Exports the entries of `path` that the environment does not already set.
pub fn load(path: &Path) -> anyhow::Result<()> {
    for (key, value) in entries_to_set(path, |key| std::env::var_os(key).is_some())? {
        std::env::set_var(key, value);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::entries_to_set;
    use crate::TempDir;

    #[test]
    fn the_environment_wins_over_the_file() {
        let dir = TempDir::new("chronicle-dotenv").unwrap();
        let file = dir.path().join(".env");
        std::fs::write(
            &file,
            "# local settings\nDATABASE_URL=postgres://file@127.0.0.1/x\nexport NATS_URL='nats://127.0.0.1:4300'\nJWT_SECRET=\"from the file\" # quoted\n",
        )
        .unwrap();

        let entries = entries_to_set(&file, |key| key == "DATABASE_URL").unwrap();

        assert_eq!(
            entries,
            vec![
                ("NATS_URL".to_owned(), "nats://127.0.0.1:4300".to_owned()),
                ("JWT_SECRET".to_owned(), "from the file".to_owned()),
            ]
        );
    }

    #[test]
    fn a_missing_file_sets_nothing() {
        let dir = TempDir::new("chronicle-dotenv").unwrap();

        let entries = entries_to_set(&dir.path().join(".env"), |_| false).unwrap();

        assert!(entries.is_empty());
    }

    #[test]
    fn loading_keeps_a_variable_already_set() {
        let dir = TempDir::new("chronicle-dotenv").unwrap();
        let file = dir.path().join(".env");
        std::fs::write(
            &file,
            "DEVSERVICES_TEST_KEPT=file\nDEVSERVICES_TEST_NEW=file\n",
        )
        .unwrap();
        std::env::set_var("DEVSERVICES_TEST_KEPT", "environment");

        super::load(&file).unwrap();

        assert_eq!(
            std::env::var("DEVSERVICES_TEST_KEPT").unwrap(),
            "environment"
        );
        assert_eq!(std::env::var("DEVSERVICES_TEST_NEW").unwrap(), "file");
    }
}
