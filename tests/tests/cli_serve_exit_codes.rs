//! `gridlog serve`'s exit status when it cannot start, as an operator (or systemd, or a
//! script) reads it: 1 only when the history is damaged; 2 when the start could not be done
//! for a reason no repair of the data would change — another process holds the data
//! directory, a setting out of range (README, "Operations").

use gridlog_tests::gridlog_command;
use gridlog_tests::server::Server;

fn serve(data_dir: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = gridlog_command()
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .output()
        .expect("run gridlog serve");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_data_directory_held_by_a_running_gateway_is_exit_2_naming_its_pid() {
    let mut running = Server::start(&[]);
    let (code, stderr) = serve(&running.data_dir, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&running.pid().to_string()), "{stderr}");
    assert!(running.stop().success());
}

#[test]
fn a_segment_size_out_of_range_is_exit_2_naming_the_setting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stderr) = serve(
        &dir.path().join("data"),
        &[("GRIDLOG_WAL__SEGMENT_BYTES", "100")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("wal.segment_bytes"), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created for a refused configuration"
    );
}
