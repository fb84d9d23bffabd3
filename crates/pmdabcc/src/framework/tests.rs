//! The framework against the built-in objects, and against random and mutated specs and
//! objects: never a panic, and every spec error names the file and a line of it.

use super::spec::Spec;
use super::*;
use proptest::prelude::*;

const SYSFORK_SPEC: &str = include_str!("../modules/sysfork/sysfork.toml");
const BIOLAT_SPEC: &str = include_str!("../modules/biolatency/biolatency.toml");
const SYSFORK_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sysfork.bpf.o"));
const BIOLAT_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/biolatency.bpf.o"));
const NETPROC_SPEC: &str = include_str!("../modules/netproc/netproc.toml");
const NETPROC_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/netproc.bpf.o"));

fn program(spec: &str, obj: &[u8]) -> Result<Program, SpecError> {
    let s = Spec::parse(Path::new("m.toml"), spec)?;
    Program::new(s, obj.to_vec(), "m.bpf.o".into())
}

#[test]
fn layouts_come_from_btf() {
    let p = program(BIOLAT_SPEC, BIOLAT_OBJ).unwrap();
    let hist = &p.layout.maps["hist"];
    assert_eq!(hist.map_type, PERCPU_ARRAY);
    let v = hist.value.as_ref().unwrap();
    assert_eq!(v.name, "hist");
    assert_eq!(v.size, 66 * 8);
    assert_eq!(v.field("count").unwrap().offset, 64 * 8);
    assert_eq!(p.layout.maps["disks"].key.as_ref().unwrap().size, 4);
    assert!(p.layout.rodata.contains_key("targ_per_disk"));
}

#[test]
fn mismatches_with_the_object_name_the_spec_line() {
    let bad = |from: &str, to: &str| {
        let e = program(&BIOLAT_SPEC.replacen(from, to, 1), BIOLAT_OBJ).unwrap_err();
        let line = BIOLAT_SPEC
            .replacen(from, to, 1)
            .lines()
            .position(|l| l.contains(to.lines().next().unwrap()))
            .unwrap()
            + 1;
        (e, line)
    };
    let (e, line) = bad("name = \"hist\"", "name = \"hst\"");
    assert!(e.msg.contains("no map \"hst\""), "{e}");
    assert_eq!(e.line, line, "{e}");
    let (e, _) = bad("global = \"targ_queued\"", "global = \"targ_queue\"");
    assert!(e.msg.contains("no read-only global \"targ_queue\""), "{e}");
    let e = program(
        &SYSFORK_SPEC.replace("field = \"tasks\"", "field = \"task\""),
        SYSFORK_OBJ,
    )
    .unwrap_err();
    assert!(
        e.msg.contains("no field \"task\"") && e.msg.contains("tasks"),
        "{e}"
    );
    let e = program(
        &SYSFORK_SPEC.replace("field = \"tasks\"", "field = \"tasks\"\ntype = \"u32\""),
        SYSFORK_OBJ,
    )
    .unwrap_err();
    assert!(e.msg.contains("does not fit"), "{e}");
    let keyed = "kind = \"keyed\"\nindom = 1\nkey = [{ decoder = \"uint\" }]";
    let e = program(
        &SYSFORK_SPEC.replace("kind = \"counters\"", keyed),
        SYSFORK_OBJ,
    )
    .unwrap_err();
    assert!(e.msg.contains("does not fit its kind"), "{e}");
    let e = program(SYSFORK_SPEC, b"not an object").unwrap_err();
    assert!(e.to_string().starts_with("m.bpf.o: "), "{e}");
}

#[test]
fn option_enabled_maps_leave_the_table() {
    let p: &'static Program = Box::leak(Box::new(program(BIOLAT_SPEC, BIOLAT_OBJ).unwrap()));
    let opts = OptionValues {
        disabled_maps: vec!["disks".into()],
        ..Default::default()
    };
    let m = SpecModule::new(p, opts, 60);
    let (t, i) = m.layout().unwrap();
    assert_eq!(t.len(), 3);
    assert!(t.iter().all(|m| m.name.starts_with("disk.all.")));
    assert_eq!(i.len(), 1);
}

/// A keyed map whose instance ids are a key field (biolatency's per-disk map, keyed by a
/// plain `__u32`, served as if its key were a pid).
const BY_ID_SPEC: &str = r#"[module]
name = "t"
summary = "t"
cluster = 99
[[map]]
name = "disks"
kind = "keyed"
indom = 1
key = [ { decoder = "pid" } ]
instance_id = "key"
[[map.metric]]
field = "count"
item = 0
name = "t.count"
oneline = "o"
help = "h"
"#;

/// The key parts and instance id field of a program's first map, a keyed map with ids.
fn keyed_by_id(p: &Program) -> (&[KeyPlan], &Loc) {
    match &p.maps[0].plan {
        Plan::Keyed {
            key,
            instance_id: Some(id),
            ..
        } => (key, id),
        other => panic!("{other:?}"),
    }
}

#[test]
fn instance_ids_from_a_key_field() {
    let p = program(BY_ID_SPEC, BIOLAT_OBJ).unwrap();
    assert_eq!(p.indoms.len(), 1);
    assert_eq!(p.indoms[0].kind, pcp_pmda::IndomKind::Fixed);
    let (key, id) = keyed_by_id(&p);
    // Ids are the keys (one per id, above i32::MAX refused), names the decoded keys.
    let rows: Vec<(Vec<u8>, Vec<u8>)> = [42u32, 7, 42, u32::MAX, 0]
        .iter()
        .map(|k| (k.to_ne_bytes().to_vec(), vec![]))
        .collect();
    assert_eq!(
        serve::fixed_members(key, id, rows.iter().map(|(k, _)| k.as_slice())),
        vec![
            (0, "000000".to_string()),
            (7, "000007".into()),
            (42, "000042".into())
        ]
    );
    // Without instance_id the indom stays name-cached.
    let p = program(
        &BY_ID_SPEC.replace("instance_id = \"key\"\n", ""),
        BIOLAT_OBJ,
    )
    .unwrap();
    assert_eq!(p.indoms[0].kind, pcp_pmda::IndomKind::Cached);
    // A field the key lacks, or one that is not a small integer, names the line.
    let e = program(
        &BY_ID_SPEC.replace("instance_id = \"key\"", "instance_id = \"tgid\""),
        BIOLAT_OBJ,
    )
    .unwrap_err();
    assert_eq!(e.line, 10, "{e}");
    let e = program(
        &BY_ID_SPEC
            .replace("name = \"disks\"", "name = \"hist\"")
            .replace("kind = \"keyed\"", "kind = \"keyed\"\n"),
        BIOLAT_OBJ,
    )
    .unwrap_err();
    assert!(e.msg.contains("does not fit its kind"), "{e}");
}

/// A process key with `start`: the start time field is found and goes with the PID to the
/// name cache; `start` with another decoder, or naming no integer key field, is an error
/// at its line.
#[test]
fn process_keys_with_a_start_time() {
    let p = program(NETPROC_SPEC, NETPROC_OBJ).unwrap();
    let (key, id) = keyed_by_id(&p);
    let start = key[0]
        .start
        .as_ref()
        .expect("netproc's key has a start field");
    assert_eq!((start.offset, start.size), (8, 8));
    let me = std::process::id();
    let mut k = me.to_ne_bytes().to_vec();
    k.extend([0; 4]);
    k.extend(12345u64.to_ne_bytes());
    assert_eq!(
        serve::fixed_members(key, id, [k.as_slice()].into_iter()),
        vec![(me, decode::Decoder::PidCmd.decode(&me.to_ne_bytes()))]
    );
    let line = NETPROC_SPEC
        .lines()
        .position(|l| l.contains("start = \"start\""))
        .unwrap()
        + 1;
    for bad in [
        NETPROC_SPEC.replace("decoder = \"pid_cmd\", start", "decoder = \"pid\", start"),
        NETPROC_SPEC.replace("start = \"start\"", "start = \"begin\""),
    ] {
        let e = program(&bad, NETPROC_OBJ).unwrap_err();
        assert_eq!(e.line, line, "{e}");
    }
}

/// A valid spec with one line dropped, duplicated, or its value replaced.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let n = base.lines().count();
    (0..n, 0..4u8, "[ -~]{0,12}").prop_map(move |(i, how, junk)| {
        let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
        match how {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 => {
                if let Some((k, _)) = lines[i].split_once('=') {
                    lines[i] = format!("{k}= {junk}");
                }
            }
            _ => lines[i] = junk,
        }
        lines.join("\n")
    })
}

fn check_error(text: &str, e: &SpecError) {
    if e.file == Path::new("m.toml") {
        let n = text.lines().count().max(1);
        assert!(
            e.line >= 1 && e.line <= n + 1,
            "line {} of {n}: {e}",
            e.line
        );
    } else {
        assert_eq!(e.file, Path::new("m.bpf.o"), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_specs_never_panic(text in "[\\[\\]a-z_.=\"0-9 \n{},]{0,300}") {
        if let Err(e) = Spec::parse(Path::new("m.toml"), &text) {
            check_error(&text, &e);
        }
    }

    #[test]
    fn mutated_specs_fail_with_a_line(text in mutated(BIOLAT_SPEC)) {
        if let Err(e) = program(&text, BIOLAT_OBJ) {
            check_error(&text, &e);
        }
    }

    #[test]
    fn mutated_objects_never_panic(at in 0usize..SYSFORK_OBJ.len(), byte in any::<u8>(), cut in any::<bool>()) {
        let mut obj = SYSFORK_OBJ.to_vec();
        if cut {
            obj.truncate(at);
        } else {
            obj[at] = byte;
        }
        if let Err(e) = program(SYSFORK_SPEC, &obj) {
            check_error(SYSFORK_SPEC, &e);
        }
    }
}

#[test]
fn ports_options_need_a_hash_map_of_u16() {
    let opt = "[[option]]\nkey = \"lport\"\ntype = \"ports\"\ndoc = \"d\"\n";
    let e = Spec::parse(
        Path::new("m.toml"),
        &SYSFORK_SPEC.replacen("[[map]]", &format!("{opt}\n[[map]]"), 1),
    )
    .unwrap_err();
    assert!(e.msg.contains("needs map ="), "{e}");
    let with_map =
        SYSFORK_SPEC.replacen("[[map]]", &format!("{opt}map = \"counts\"\n\n[[map]]"), 1);
    let e = program(&with_map, SYSFORK_OBJ).unwrap_err();
    assert!(e.msg.contains("keyed by __u16"), "{e}");
}

const EXEC_SPEC: &str = include_str!("../modules/execsnoop/execsnoop.toml");
const EXEC_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/execsnoop.bpf.o"));

#[test]
fn event_records_aliases_and_match_options_come_from_the_spec() {
    let p = program(EXEC_SPEC, EXEC_OBJ).unwrap();
    let rec = p
        .metrics
        .iter()
        .find(|m| m.item == 100)
        .expect("records metric");
    assert_eq!(
        (rec.name, rec.ty, rec.sem, rec.indom),
        (
            "execsnoop.records",
            Type::Event,
            pcp_pmda::Semantics::Instant,
            None
        )
    );
    let Plan::Events { records, .. } = &p.maps[0].plan else {
        panic!("events plan")
    };
    assert_eq!(*records, Some(100));
    let comm = p.metrics.iter().find(|m| m.item == 0).unwrap();
    assert_eq!(comm.aliases, &["proc.exec.comm"]);
    // An alias may not take another metric's name.
    let e = program(
        &EXEC_SPEC.replace(
            "aliases = [\"proc.exec.pid\"]",
            "aliases = [\"execsnoop.comm\"]",
        ),
        EXEC_OBJ,
    )
    .unwrap_err();
    assert!(e.msg.contains("declared twice"), "{e}");
    // A match option names a field some events map serves.
    let e = program(
        &EXEC_SPEC.replace("field = \"comm\"\ndoc", "field = \"cmd\"\ndoc"),
        EXEC_OBJ,
    )
    .unwrap_err();
    assert!(
        e.msg
            .contains("no events map has a metric of field \"cmd\""),
        "{e}"
    );
    // records = { … } is a metric definition like the others: a bad key is named.
    let e = program(
        &EXEC_SPEC.replace(
            "records = { item = 100,",
            "records = { item = 100, colour = 1,",
        ),
        EXEC_OBJ,
    )
    .unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
}

#[test]
fn argv_and_sizes_decode() {
    assert_eq!(decode::argv(b"/bin/true\0a b\0c\0\0\0"), "/bin/true a b c");
    assert_eq!(decode::argv(b""), "");
    assert_eq!(parse_size("64K"), Some(65536));
    assert_eq!(parse_size(" 32M "), Some(32 << 20));
    assert_eq!(parse_size("1g"), Some(1 << 30));
    assert_eq!(parse_size("12"), Some(12));
    assert_eq!(parse_size("M"), None);
    assert_eq!(parse_size("-1K"), None);
}

#[test]
fn a_record_cut_inside_its_last_field_gives_what_it_has() {
    let l = Loc {
        offset: 4,
        size: 8,
        kind: layout::FieldKind::Text,
    };
    assert_eq!(l.bytes(b"xxxxab"), b"ab");
    assert_eq!(l.bytes(b"xxx"), b"");
    assert_eq!(l.bytes(b"xxxxabcdefghij"), b"abcdefgh");
}
