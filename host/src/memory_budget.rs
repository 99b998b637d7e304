//! Does the engine fit this machine at its configured limits? At start-up `serve` compares
//! the most the image can grow to — `engine.entities_max` meters, each with a whole block
//! (8 hours) of quarter hours in memory, and a full queue of sealed days for the rollup store —
//! with the memory the process may use (the cgroup's `memory.max`, as a systemd
//! `MemoryMax=` sets it, or else the machine's `MemTotal`), and warns, with the numbers and
//! the setting that lowers them, when a gateway could run out of memory as meters are added
//! (a 32-bit process is also capped by its address space). The rollup horizons do not
//! count: days before a meter's current one are on disk. The decision is pure
//! ([`check`]); reading the limits is the only I/O.

use std::path::Path;

use gridlog_firmware::engine::RollupOptions;

/// Memory of one entity besides its rollup slots, at most (BENCHMARKS "Rollup memory by
/// horizon": ~1.4 KB measured): its state, index, checkpoints, the planner's copy and the
/// id map, with room for the allocator.
pub const ENTITY_BYTES_BESIDES_ROLLUPS: u64 = 4 * 1024;

/// Memory of the process that does not grow with entities, at most: the binary, runtime,
/// buffers and the remembered readings' fingerprints (BENCHMARKS "Memory").
pub const PROCESS_FIXED_BYTES: u64 = 48 * 1024 * 1024;

/// The most a 32-bit process can address, whatever the machine holds (an armv7 gateway
/// with 4 GB or more under an LPAE kernel): about 3 GiB, part of it the log's mapped segments.
pub const ADDRESS_SPACE_32_BIT_BYTES: u64 = 3 * 1024 * 1024 * 1024;

/// The share of the memory limit the engine's worst case may take before `serve` warns: the
/// rest is for the page cache of the log, HTTP clients, ingest queues and the system.
pub const MEMORY_SHARE_PERCENT: u64 = 75;

/// What the engine may grow to, against what the process may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The engine's worst case: every entity a meter with full rollup horizons.
    pub worst_case_bytes: u64,
    /// The memory the process may use.
    pub limit_bytes: u64,
    /// Most entities whose worst case fits the share of the limit.
    pub entities_that_fit: u64,
}

/// The budget of `entities_max` entities with `rollups` and a rollup queue of at most
/// `ROLLUP_QUEUE_SPILLS_MAX` × `rollup_spill_bytes` (writes wait beyond it) under
/// `limit_bytes`, if its worst case is over
/// [`MEMORY_SHARE_PERCENT`] of the limit (`None`: it fits).
pub fn check(
    entities_max: usize,
    rollups: &RollupOptions,
    rollup_spill_bytes: u64,
    limit_bytes: u64,
) -> Option<Budget> {
    let per_entity =
        (rollups.bytes_per_meter() as u64).saturating_add(ENTITY_BYTES_BESIDES_ROLLUPS);
    let queue =
        rollup_spill_bytes.saturating_mul(gridlog_firmware::engine::ROLLUP_QUEUE_SPILLS_MAX);
    let fixed = PROCESS_FIXED_BYTES.saturating_add(queue);
    let worst_case_bytes = fixed.saturating_add((entities_max as u64).saturating_mul(per_entity));
    let share = limit_bytes / 100 * MEMORY_SHARE_PERCENT;
    if worst_case_bytes <= share {
        return None;
    }
    Some(Budget {
        worst_case_bytes,
        limit_bytes,
        entities_that_fit: share.saturating_sub(fixed) / per_entity,
    })
}

/// What `serve` logs for a budget over the limit.
pub fn warning(budget: &Budget, entities_max: usize) -> String {
    let mib = |b: u64| b / (1024 * 1024);
    format!(
        "at engine.entities_max = {entities_max} meters the engine may grow to {} MiB, over \
         {MEMORY_SHARE_PERCENT}% of the {} MiB this process may use: it would run out of \
         memory as meters are added. Lower engine.entities_max to {} or fewer (or \
         storage.rollup_spill_bytes)",
        mib(budget.worst_case_bytes),
        mib(budget.limit_bytes),
        budget.entities_that_fit
    )
}

/// The memory this process may use: the smallest of its cgroup's limit (cgroup v2
/// `memory.max`, when it is a number), the machine's memory and, in a 32-bit process,
/// [`ADDRESS_SPACE_32_BIT_BYTES`]; `None` if neither limit can be read (not Linux, or
/// `/proc` missing).
pub fn limit_bytes() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_bytes(&text));
    let cgroup =
        own_cgroup_limit_bytes(Path::new("/proc/self/cgroup"), Path::new("/sys/fs/cgroup"));
    let limit = match (machine, cgroup) {
        (Some(m), Some(c)) => m.min(c),
        (m, c) => m.or(c)?,
    };
    Some(if cfg!(target_pointer_width = "32") {
        limit.min(ADDRESS_SPACE_32_BIT_BYTES)
    } else {
        limit
    })
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// `memory.max` of the process's cgroup (v2: the `0::<path>` line of `/proc/self/cgroup`),
/// if it is a number, not `max`.
fn own_cgroup_limit_bytes(proc_cgroup: &Path, cgroup_root: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(proc_cgroup).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = cgroup_root.join(path.trim_start_matches('/'));
    memory_max_bytes(&std::fs::read_to_string(dir.join("memory.max")).ok()?)
}

/// A cgroup v2 `memory.max` file's limit: a number of bytes, or `max` (none).
fn memory_max_bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn the_defaults_fit_512_mib_and_warn_on_128_mib_naming_what_fits() {
        let defaults = RollupOptions::default();
        let spill = 4 * MIB;
        assert_eq!(check(20_000, &defaults, spill, 512 * MIB), None);
        let budget = check(20_000, &defaults, spill, 128 * MIB).expect("over on 128 MiB");
        // 48 MiB + 4 × 4 MiB of queue + 20,000 × (1,040 + 4,096) B.
        assert_eq!(budget.worst_case_bytes, 64 * MIB + 20_000 * 5_136);
        // (96 MiB − 64 MiB) / 5,136 B.
        assert_eq!(budget.entities_that_fit, (96 * MIB - 64 * MIB) / 5_136);
        let fits = budget.entities_that_fit as usize;
        assert!(check(fits, &defaults, spill, 128 * MIB).is_none());
        assert!(check(fits + 1, &defaults, spill, 128 * MIB).is_some());
        let text = warning(&budget, 20_000);
        for part in [
            "engine.entities_max",
            "6533 or fewer",
            "128 MiB",
            "rollup_spill_bytes",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }

    #[test]
    fn the_horizons_do_not_change_the_worst_case() {
        let short = RollupOptions {
            quarter_hour_days: 2,
            day_days: 60,
        };
        let at = |rollups| check(20_000, rollups, 4 * MIB, 128 * MIB).map(|b| b.worst_case_bytes);
        assert_eq!(at(&RollupOptions::default()), at(&short));
    }

    #[test]
    fn a_tiny_limit_fits_no_entity_without_underflow() {
        let budget = check(1, &RollupOptions::default(), 0, 16 * MIB).expect("over");
        assert_eq!(budget.entities_that_fit, 0);
    }

    #[test]
    fn absurd_limits_saturate_instead_of_wrapping() {
        let budget = check(usize::MAX, &RollupOptions::default(), 0, 4096 * MIB).expect("over");
        assert_eq!(budget.worst_case_bytes, u64::MAX);
    }

    #[test]
    fn limits_are_read_from_meminfo_and_cgroup_files() {
        let meminfo = "MemTotal:        3884564 kB\nMemFree:          123 kB\n";
        assert_eq!(mem_total_bytes(meminfo), Some(3_884_564 * 1024));
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
        assert_eq!(memory_max_bytes("536870912\n"), Some(512 * MIB));
        assert_eq!(memory_max_bytes("max\n"), None);

        let tmp = tempfile::tempdir().unwrap();
        let proc_cgroup = tmp.path().join("cgroup");
        std::fs::write(&proc_cgroup, "0::/system.slice/gridlog.service\n").unwrap();
        let root = tmp.path().join("sys");
        let unit = root.join("system.slice/gridlog.service");
        std::fs::create_dir_all(&unit).unwrap();
        std::fs::write(unit.join("memory.max"), "268435456\n").unwrap();
        assert_eq!(own_cgroup_limit_bytes(&proc_cgroup, &root), Some(256 * MIB));
        std::fs::write(unit.join("memory.max"), "max\n").unwrap();
        assert_eq!(own_cgroup_limit_bytes(&proc_cgroup, &root), None);
    }
}
