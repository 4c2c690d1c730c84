//! packaging/man/rsockd.conf.5 carries the keyword list generated from the support table
//! (`RSOCKD_BLESS=1 cargo test -p rsockd-config --test manual` rewrites it), and the config
//! README's table names every keyword of that table too: one source for both.
#![allow(clippy::unwrap_used)]

use rsockd_config::manual::{keyword_section, BEGIN, END};
use rsockd_config::support::KEYWORDS;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_manual_page_lists_the_support_table() {
    let path = root().join("packaging/man/rsockd.conf.5");
    let page = std::fs::read_to_string(&path).unwrap();
    let start = page.find(BEGIN).expect("the BEGIN marker");
    let end = page.find(END).expect("the END marker") + END.len() + 1;
    let want = keyword_section();
    if std::env::var_os("RSOCKD_BLESS").is_some() {
        let new = format!("{}{want}{}", &page[..start], &page[end..]);
        std::fs::write(&path, new).unwrap();
        return;
    }
    assert_eq!(
        page[start..end],
        want,
        "rsockd.conf.5 is out of date: RSOCKD_BLESS=1 cargo test -p rsockd-config --test manual"
    );
}

#[test]
fn the_config_readme_names_every_keyword() {
    let readme = std::fs::read_to_string(root().join("crates/config/README.md")).unwrap();
    let missing: Vec<&str> = KEYWORDS
        .iter()
        .map(|e| e.key)
        .filter(|k| !readme.contains(&format!("`{k}")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in crates/config/README.md: {missing:?}"
    );
}
