//! A crash between a tail round's manifest and its state file: `ship/tail.json` is lost
//! (or stale). The next start adopts the chunk manifests after the head it knows, without
//! recording anything for them, continues the chain, and the store audits clean; a restore
//! still brings back the whole log.

#[allow(dead_code)]
mod ship_support;

use ship_support::*;

#[test]
fn a_lost_tail_state_is_reconciled_from_the_store() {
    let moto = Moto::start();
    let bucket = moto.bucket();
    let prefix = "tail-lost";
    let env = ship_env(&moto.endpoint(), prefix);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gateway");
    grow(&dir, 3, 200);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    let tail = dir.join("ship").join("tail.json");
    assert!(tail.is_file());
    std::fs::remove_file(&tail).unwrap();
    let lineage = std::fs::read_to_string(dir.join("LINEAGE")).unwrap();
    let root = format!("{prefix}/{SITE}/{}", lineage.trim());
    let manifests_before = bucket
        .keys(&root)
        .iter()
        .filter(|k| k.contains("/manifests/"))
        .count();

    // More log, shipped by a new process that lost the tail state.
    grow(&dir, 3, 200);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(tail.is_file(), "the state is written again");
    let keys = bucket.keys(&root);
    assert!(
        keys.iter().filter(|k| k.contains("/manifests/")).count() > manifests_before,
        "{keys:?}"
    );
    let (code, out) = {
        let o = gridlog_tests::gridlog_command()
            .args(["ship", "--check"])
            .env("GRIDLOG_LOG", "error")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    assert_eq!(code, 0, "{out}");

    let original = events(&dir, 1);
    let restored = tmp.path().join("restored");
    let (code, out, err) = restore(prefix, &restored, &moto.endpoint(), &["--full"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(events(&restored, 1), original);
}
