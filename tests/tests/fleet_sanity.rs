//! `ansible-test sanity` on the bulwark.host collection, with the pinned
//! ansible-core (ansible/requirements.txt) that ansible/install-venv puts
//! in its own virtualenv: module documentation against argument specs,
//! pylint, pep8, yamllint, imports, compile, runtime metadata, ...
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fleet/lab.rs"]
mod lab;

use std::process::Command;

use bulwark_tests::{run, run_ok};

#[test]
fn the_collection_passes_ansible_test_sanity() {
    let venv = lab::venv();
    let collection = lab::repo().join("ansible/ansible_collections/bulwark/host");
    let python =
        run_ok(Command::new(venv.join("bin/python")).args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]));
    // HOME: where install-venv primed ansible-test's own virtualenvs, so the
    // run needs no network.
    let r = run(Command::new(venv.join("bin/ansible-test"))
        .args(["sanity", "--local", "--color", "no", "--python", python.stdout.trim()])
        .current_dir(&collection)
        .env("HOME", venv.join("home")));
    assert!(r.ok(), "ansible-test sanity failed:\n{r}");
    let ran = r.stderr.matches("Running sanity test").count() + r.stdout.matches("Running sanity test").count();
    assert!(ran >= 20, "ansible-test ran only {ran} sanity tests:\n{r}");
    for test in [
        "validate-modules",
        "pylint",
        "yamllint",
        "ansible-doc",
        "import",
        "pep8",
    ] {
        let line = format!("Running sanity test \"{test}\"");
        assert!(
            r.stdout.contains(&line) || r.stderr.contains(&line),
            "{test} did not run:\n{r}"
        );
    }
}
