//! `gridlog import --csv`: rows become durable readings; a malformed row stops the import
//! with its line number and exit status 1, and nothing after it is stored.

use gridlog_tests::run_gridlog;

#[test]
fn import_loads_rows_and_stops_at_a_bad_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let csv = tmp.path().join("readings.csv");
    let mut text = String::from("meter,time,import_wh,export_wh,power_w\n");
    for i in 0..5000 {
        text.push_str(&format!(
            "m1,2024-01-01T{:02}:{:02}:{:02}Z,{},0,100\n",
            i / 3600,
            i / 60 % 60,
            i % 60,
            i
        ));
    }
    text.push_str("m1,not-a-time,1,0,1\n");
    text.push_str("m1,2024-01-02T00:00:00Z,99999,0,100\n");
    std::fs::write(&csv, text).unwrap();
    let output = gridlog_tests::gridlog_command()
        .args(["import", "--csv"])
        .arg(&csv)
        .arg("--data-dir")
        .arg(&data)
        .env("GRIDLOG_ENGINE__AUTO_REGISTER", "submeter")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 5002: time"), "{stderr}");
    assert!(
        stderr.contains("rows up to line 5001 are durable"),
        "{stderr}"
    );
    // Registration + 5000 readings, and not the row after the bad one.
    let dump = run_gridlog(["dump".as_ref(), "--data-dir".as_ref(), data.as_os_str()]);
    assert!(dump.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&dump.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5001);
    assert_eq!(lines[0]["event"]["type"], "meter_registered");
    assert_eq!(lines[5000]["event"]["data"]["import_wh"], 4999.0);
}
