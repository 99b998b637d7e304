use super::*;
use proptest::prelude::*;

fn one(text: &str) -> Result<Point<'_>, LineErrorKind> {
    parse_line(text.as_bytes(), 1, Precision::Nanoseconds)
}

#[test]
fn a_full_line_parses_every_field_type() {
    let p = one(
        r#"meter,id=m1,site=a import_wh=12.5,n=-3i,u=7u,s="ok \"x\" \\",b=t 1700000000000000000"#,
    )
    .unwrap();
    assert_eq!(p.measurement, "meter");
    assert_eq!(p.tag("id"), Some("m1"));
    assert_eq!(p.tag("site"), Some("a"));
    assert_eq!(p.field("import_wh"), Some(&FieldValue::Float(12.5)));
    assert_eq!(p.field("n"), Some(&FieldValue::Integer(-3)));
    assert_eq!(p.field("u"), Some(&FieldValue::Unsigned(7)));
    assert_eq!(
        p.field("s"),
        Some(&FieldValue::String(r#"ok "x" \"#.into()))
    );
    assert_eq!(p.field("b"), Some(&FieldValue::Boolean(true)));
    assert_eq!(p.time_ns, Some(1_700_000_000_000_000_000));
}

#[test]
fn escapes_in_names_are_removed() {
    let p = one(r"my\ meter\,x,tag\ key=va\=lue\,z fi\=eld=1").unwrap();
    assert_eq!(p.measurement, "my meter,x");
    assert_eq!(p.tag("tag key"), Some("va=lue,z"));
    assert_eq!(p.field("fi=eld"), Some(&FieldValue::Float(1.0)));
    // A backslash before anything else is kept.
    let p = one(r"c\:d,t=a\b v=1").unwrap();
    assert_eq!(p.measurement, r"c\:d");
    assert_eq!(p.tag("t"), Some(r"a\b"));
}

#[test]
fn each_precision_scales_to_nanoseconds() {
    for (text, ns) in [
        ("n", 5),
        ("ns", 5),
        ("u", 5_000),
        ("ms", 5_000_000),
        ("s", 5_000_000_000),
        ("m", 300_000_000_000),
        ("h", 18_000_000_000_000),
    ] {
        let precision = Precision::parse(text).unwrap();
        let p = parse_line(b"m v=1 5", 1, precision).unwrap();
        assert_eq!(p.time_ns, Some(ns), "{text}");
    }
    assert_eq!(Precision::parse("x"), None);
    assert!(matches!(
        parse_line(b"m v=1 9223372036854775807", 1, Precision::Seconds),
        Err(LineErrorKind::BadTimestamp { .. })
    ));
}

#[test]
fn every_malformed_line_names_what_is_wrong() {
    type Expect = fn(&LineErrorKind) -> bool;
    let cases: &[(&str, Expect)] = &[
        ("meter,id=m1", |k| {
            matches!(k, LineErrorKind::MissingFieldSet)
        }),
        ("meter,id=m1 ", |k| {
            matches!(k, LineErrorKind::MissingFieldSet)
        }),
        (",id=m1 v=1", |k| {
            matches!(k, LineErrorKind::MissingMeasurement)
        }),
        ("m,id v=1", |k| matches!(k, LineErrorKind::BadTag { .. })),
        ("m,id= v=1", |k| matches!(k, LineErrorKind::BadTag { .. })),
        ("m v", |k| matches!(k, LineErrorKind::BadField { .. })),
        ("m v=", |k| matches!(k, LineErrorKind::BadField { .. })),
        ("m v=1,", |k| matches!(k, LineErrorKind::BadField { .. })),
        ("m v=abc", |k| matches!(k, LineErrorKind::BadValue { .. })),
        ("m v=1x", |k| matches!(k, LineErrorKind::BadValue { .. })),
        ("m v=1.5i", |k| matches!(k, LineErrorKind::BadValue { .. })),
        ("m v=-1u", |k| matches!(k, LineErrorKind::BadValue { .. })),
        ("m v=99999999999999999999i", |k| {
            matches!(k, LineErrorKind::BadValue { .. })
        }),
        ("m v=NaN", |k| matches!(k, LineErrorKind::NotFinite { .. })),
        ("m v=-inf", |k| matches!(k, LineErrorKind::NotFinite { .. })),
        ("m v=1e999", |k| {
            matches!(k, LineErrorKind::NotFinite { .. })
        }),
        (r#"m v="open"#, |k| {
            matches!(k, LineErrorKind::UnterminatedString { .. })
        }),
        (r"m v=1\", |k| matches!(k, LineErrorKind::BadEscape)),
        ("m v=1 12.5", |k| {
            matches!(k, LineErrorKind::BadTimestamp { .. })
        }),
        ("m v=1 2026-01-01", |k| {
            matches!(k, LineErrorKind::BadTimestamp { .. })
        }),
        ("m v=1 1 2", |k| {
            matches!(k, LineErrorKind::TrailingText { .. })
        }),
    ];
    for (text, expected) in cases {
        match one(text) {
            Err(kind) => assert!(expected(&kind), "{text}: {kind:?}"),
            Ok(p) => panic!("{text} parsed: {p:?}"),
        }
    }
    let e = one("m v=NaN").unwrap_err();
    assert_eq!(e.field(), Some("v"));
}

#[test]
fn a_body_reports_line_numbers_and_keeps_good_lines() {
    let body = b"# comment\n\nm v=1 1\nm,x v= 2\r\nm v=2 2\n  \nm v=\"a\nb\" 3\nm w=1\\\nm v=3 4\n";
    let batch = parse(body, Precision::Nanoseconds, 100);
    let lines: Vec<usize> = batch.points.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![3, 5, 10], "{:?}", batch.errors);
    let errors: Vec<(usize, String)> = batch
        .errors
        .iter()
        .map(|e| (e.line, e.to_string()))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(errors[0].0, 4);
    // Line 7's string spans a newline: a type conflict (string after float) on line 7.
    assert_eq!(errors[1].0, 7);
    assert!(
        errors[1].1.contains("field type conflict"),
        "{}",
        errors[1].1
    );
    assert!(errors[1].1.starts_with("line 7: "), "{}", errors[1].1);
    assert_eq!(errors[2].0, 9, "{errors:?}");
    assert!(errors[2].1.contains("bad escape"), "{}", errors[2].1);
}

#[test]
fn a_type_conflict_is_per_measurement_and_field() {
    let body = b"a v=1\nb v=1i\na v=2i\na v=3\n";
    let batch = parse(body, Precision::Nanoseconds, 100);
    assert_eq!(batch.points.len(), 3);
    assert_eq!(batch.errors.len(), 1);
    assert_eq!(batch.errors[0].line, 3);
    assert_eq!(batch.errors[0].kind.field(), Some("v"));
}

#[test]
fn a_long_line_and_too_many_lines_are_bounded() {
    let long = format!("m v=\"{}\"", "x".repeat(LINE_BYTES_MAX));
    assert!(matches!(
        one(&long),
        Err(LineErrorKind::TooLong {
            max: LINE_BYTES_MAX,
            ..
        })
    ));
    let body = "m v=1\n".repeat(10);
    let batch = parse(body.as_bytes(), Precision::Nanoseconds, 4);
    assert_eq!(batch.points.len(), 4);
    assert!(batch.lines_over_limit);
    let batch = parse(body.as_bytes(), Precision::Nanoseconds, 10);
    assert!(!batch.lines_over_limit);
}

fn name() -> impl Strategy<Value = String> {
    // A literal backslash before an escapable character cannot be written in line protocol
    // (InfluxDB's own encoder has the same gap), nor one at the end.
    "[a-zA-Z0-9_ ,=\\\\.:-]{1,12}".prop_filter("representable", |s| {
        let b = s.as_bytes();
        let literal_ok = b
            .iter()
            .enumerate()
            .all(|(i, &c)| c != b'\\' || matches!(b.get(i + 1), Some(n) if !b"\\ ,=".contains(n)));
        literal_ok && !s.starts_with('#') && !s.starts_with(' ')
    })
}

fn value() -> impl Strategy<Value = FieldValue<'static>> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(FieldValue::Float),
        any::<i64>().prop_map(FieldValue::Integer),
        any::<u64>().prop_map(FieldValue::Unsigned),
        "[ -~\n]{0,20}".prop_map(|s| FieldValue::String(s.into())),
        any::<bool>().prop_map(FieldValue::Boolean),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let batch = parse(&body, Precision::Nanoseconds, 64);
        prop_assert!(batch.points.len() + batch.errors.len() <= 64);
    }

    #[test]
    fn arbitrary_text_near_the_grammar_never_panics(body in "[a-z =,\"\\\\0-9.ie\\-\n#tfu]{0,200}") {
        let _ = parse(body.as_bytes(), Precision::Seconds, 64);
    }

    #[test]
    fn valid_encodings_round_trip(
        measurement in name(),
        tags in proptest::collection::vec((name(), name()), 0..4),
        fields in proptest::collection::btree_map(name(), value(), 1..5),
        time_ns in proptest::option::of(any::<i64>()),
    ) {
        let point = Point {
            line: 1,
            measurement: measurement.into(),
            tags: tags.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            time_ns,
        };
        let text = encode(&point);
        let batch = parse(text.as_bytes(), Precision::Nanoseconds, 8);
        prop_assert!(batch.errors.is_empty(), "{text:?}: {:?}", batch.errors);
        prop_assert_eq!(batch.points.len(), 1, "{:?}", text);
        prop_assert_eq!(&batch.points[0], &point, "{:?}", text);
    }
}
