//! The READMEs' code builds as written: each README's `<!-- file: PATH -->` blocks make a crate
//! beside a clone of this repository, and that crate's build and tests pass.

use e2e::{cargo, marked_files, workspace_root, write_crate, TempDir};

const READMES: [&str; 3] = ["README.md", "pdk/README.md", "pdk-test/README.md"];

#[test]
fn every_readme_snippet_builds_as_written() {
    let work = TempDir::new("readme");
    for readme in READMES {
        let text = std::fs::read_to_string(workspace_root().join(readme)).unwrap();
        let files = marked_files(&text);
        for (language, extension) in [("rust", ".rs"), ("toml", ".toml")] {
            let fenced = text.matches(&format!("```{language}\n")).count();
            let marked = files
                .iter()
                .filter(|(path, _)| path.ends_with(extension))
                .count();
            assert_eq!(
                fenced, marked,
                "{readme}: every {language} block must be a file of its crate, so this test builds it"
            );
        }
        let name = files
            .iter()
            .find(|(path, _)| path == "Cargo.toml")
            .and_then(|(_, manifest)| {
                manifest
                    .lines()
                    .find_map(|line| line.strip_prefix("name = \""))
                    .map(|name| name.trim_end_matches('"').to_string())
            })
            .unwrap_or_else(|| panic!("{readme}: no Cargo.toml block with a name"));
        let args = write_crate(&work.path().join(&name), &files);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cargo("test", &args);
        cargo("build", &args);
    }
}
