//! The example plugins through the real host: all load (the loader checks each schema against
//! Kong's rules), and rust-phases behaves as specified in every phase over real sockets.

use e2e::{artifacts, run_host, start_instance, Setup};
use kong_driver::{run_event, EventEnd, SimRequest};

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
    let mut request = SimRequest::new()
        .path("/orders?page=2")
        .status(201)
        .service_response(201, "twelve bytes");

    for phase in ["rewrite", "access", "response", "log"] {
        let outcome = run_event(&kong, id, phase, &mut request).await.unwrap();
        assert!(
            matches!(outcome.end, EventEnd::Ret),
            "{phase}: {:?}",
            outcome.end
        );
    }
    assert_eq!(request.upstream_headers().get_str("x-rewrite"), Some("1"));
    assert_eq!(request.upstream_headers().get_str("x-shared"), Some("r-ok"));
    assert_eq!(
        request.response_headers().get_str("x-upstream-status"),
        Some("201")
    );
    assert_eq!(
        request.response_headers().get_str("x-upstream-body-len"),
        Some("12")
    );
    assert_eq!(
        request.logs(),
        [(
            "notice".to_string(),
            "rust-phases log: status=201 uri=/orders?page=2".to_string()
        )]
    );
}
