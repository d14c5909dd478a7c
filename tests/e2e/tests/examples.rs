//! The example plugins through the real host: all load (the loader checks each schema against
//! Kong's rules), and rust-phases behaves as specified in every phase over real sockets.

use e2e::{artifacts, run_host, start_instance, Setup};
use kong_driver::{run_event, EventEnd};

const NAMES: [&str; 4] = [
    "rust-phases",
    "rust-key-auth",
    "rust-response-transformer",
    "rust-request-logger",
];

fn setup() -> Setup {
    let files: Vec<(&std::path::Path, &str)> = artifacts()
        .examples
        .iter()
        .map(|path| (path.as_path(), path.file_name().unwrap().to_str().unwrap()))
        .collect();
    Setup::new(&files)
}

#[test]
fn every_example_loads_with_a_schema_kong_accepts() {
    let setup = setup();
    let dir = setup.plugins.path().to_str().unwrap();
    let (status, stdout, stderr) = run_host(&["dump", "--all", "--plugins-dir", dir]);
    assert!(status.success(), "{stderr}");
    let dump: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mut names: Vec<&str> = dump["Plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Name"].as_str().unwrap())
        .collect();
    names.sort();
    let mut expected = NAMES.to_vec();
    expected.sort();
    assert_eq!(names, expected, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let phases = dump["Plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["Name"] == "rust-phases")
        .map(|p| p["Phases"].clone());
    assert_eq!(
        phases,
        Some(serde_json::json!(["rewrite", "access", "response", "log"]))
    );
}

#[tokio::test]
async fn rust_phases_through_the_host_in_every_phase() {
    let setup = setup();
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "rust-phases", "{}").await;
    let mut request = e2e::phases_request();

    for phase in ["rewrite", "access", "response", "log"] {
        let outcome = run_event(&kong, id, phase, &mut request).await.unwrap();
        assert!(
            matches!(outcome.end, EventEnd::Ret),
            "{phase}: {:?}",
            outcome.end
        );
    }
    e2e::assert_phases_contract(&request);
}
