use super::*;
use crate::ingest::line_protocol::{parse_line, Precision};

fn point(text: &str) -> Point<'_> {
    parse_line(text.as_bytes(), 1, Precision::Seconds).unwrap()
}

fn config(toml_text: &str) -> Vec<MappingConfig> {
    #[derive(Deserialize)]
    struct File {
        mapping: Vec<MappingConfig>,
    }
    toml::from_str::<File>(toml_text).unwrap().mapping
}

#[test]
fn the_default_meter_mapping_makes_a_reading() {
    let mapper = Mapper::new(&[]).unwrap();
    let p = point("meter,id=m1 import_wh=10,export_wh=2i,power_w=5u,voltage_v=230.5 1700000000");
    let Mapped::Command(Command::RecordReading { meter, reading }) = mapper.map(&p, 7).unwrap()
    else {
        panic!("not a reading")
    };
    assert_eq!(meter.as_str(), "m1");
    assert_eq!(reading.time_ms, 1_700_000_000_000);
    assert_eq!(
        (reading.import_wh, reading.export_wh, reading.power_w),
        (10.0, 2.0, 5.0)
    );
    assert_eq!(reading.voltage_v, Some(230.5));
    assert_eq!(reading.current_a, None);
}

#[test]
fn the_default_asset_mapping_makes_telemetry_at_the_gateway_time() {
    let mapper = Mapper::new(&[]).unwrap();
    let p = point(r#"asset,id=bat1 power_w=-300,soc_pct=55.5,status="charging""#);
    let Mapped::Command(Command::RecordTelemetry { asset, telemetry }) =
        mapper.map(&p, 1234).unwrap()
    else {
        panic!("not telemetry")
    };
    assert_eq!(asset.as_str(), "bat1");
    assert_eq!(telemetry.time_ms, 1234);
    assert_eq!(telemetry.soc_pct, Some(55.5));
    assert_eq!(telemetry.status.as_str(), "charging");
}

#[test]
fn unknown_measurements_are_unmapped_and_bad_points_name_the_field() {
    let mapper = Mapper::new(&[]).unwrap();
    assert_eq!(mapper.map(&point("cpu usage=1"), 0), Ok(Mapped::Unmapped));
    let missing = mapper.map(&point("meter,id=m1 import_wh=1,power_w=1"), 0);
    assert_eq!(
        missing,
        Err(MapError::MissingField {
            field: "export_wh".into()
        })
    );
    let text = mapper.map(
        &point(r#"meter,id=m1 import_wh="x",export_wh=1,power_w=1"#),
        0,
    );
    assert_eq!(text.unwrap_err().field(), Some("import_wh"));
    let no_id = mapper.map(&point("meter,host=a import_wh=1,export_wh=1,power_w=1"), 0);
    assert!(
        matches!(no_id, Err(MapError::MissingTag { .. })),
        "{no_id:?}"
    );
    let bad_id = mapper.map(&point("meter,id=a/b import_wh=1,export_wh=1,power_w=1"), 0);
    assert!(matches!(bad_id, Err(MapError::BadId { .. })), "{bad_id:?}");
}

#[test]
fn a_configured_mapping_converts_units_builds_ids_and_inverts() {
    let configs = config(
        r#"
        [[mapping]]
        measurement = "sml"
        tags = { phase = "all" }
        target = "meter"
        id = "{host}-{device}"
        invert = true
        fields.import_wh = { source = "total_in", unit = "kWh" }
        fields.export_wh = { source = "total_out", unit = "MWh" }
        fields.power_w = { source = "p", unit = "kW" }
        fields.reactive_power_var = { source = "q", scale = 0.5 }
        "#,
    );
    let mapper = Mapper::new(&configs).unwrap();
    let p = point("sml,host=gw,device=main,phase=all total_in=1.5,total_out=0.002,p=2,q=10i 60");
    let Mapped::Command(Command::RecordReading { meter, reading }) = mapper.map(&p, 0).unwrap()
    else {
        panic!("not a reading")
    };
    assert_eq!(meter.as_str(), "gw-main");
    // Inverted: import and export swap, power changes sign.
    assert_eq!(reading.import_wh, 2000.0);
    assert_eq!(reading.export_wh, 1500.0);
    assert_eq!(reading.power_w, -2000.0);
    assert_eq!(reading.reactive_power_var, Some(5.0));
    // The tag filter: another phase is not this mapping's, and `sml` has no default.
    let other = point("sml,host=gw,device=main,phase=l1 total_in=1,total_out=1,p=1");
    assert_eq!(mapper.map(&other, 0), Ok(Mapped::Unmapped));
}

#[test]
fn bad_mappings_are_refused_at_load() {
    let base = |fields: &str, extra: &str| {
        format!("[[mapping]]\nmeasurement = \"x\"\ntarget = \"meter\"\n{extra}\n{fields}\n")
    };
    let full = "fields.import_wh = { source = \"a\" }\nfields.export_wh = { source = \"b\" }\nfields.power_w = { source = \"c\" }";
    assert!(Mapper::new(&config(&base(full, ""))).is_ok());
    for (text, wanted) in [
        (
            base("fields.import_wh = { source = \"a\" }", ""),
            "required",
        ),
        (
            base(
                &format!("{full}\nfields.soc_pct = {{ source = \"d\" }}"),
                "",
            ),
            "not a Meter field",
        ),
        (
            base(
                &full.replace("source = \"c\"", "source = \"c\", unit = \"kWh\""),
                "",
            ),
            "does not measure",
        ),
        (
            base(
                &full.replace("source = \"c\"", "source = \"c\", unit = \"hp\""),
                "",
            ),
            "unknown unit",
        ),
        (
            base(
                &full.replace("source = \"c\"", "source = \"c\", scale = 0.0"),
                "",
            ),
            "non-zero",
        ),
        (base(full, "id = \"{host\""), "malformed"),
        (base(full, "id = \"{}\""), "malformed"),
    ] {
        let error = Mapper::new(&config(&text)).unwrap_err().to_string();
        assert!(error.contains(wanted), "{text}: {error}");
    }
}

#[test]
fn a_kwh_register_mapped_as_wh_is_passed_on_unjudged() {
    // The mapping only converts: the engine's counter rules see the 1000x jump.
    let configs = config(
        "[[mapping]]\nmeasurement = \"e\"\ntarget = \"meter\"\nfields.import_wh = { source = \"kwh\", unit = \"Wh\" }\nfields.export_wh = { source = \"o\" }\nfields.power_w = { source = \"p\" }\n",
    );
    let mapper = Mapper::new(&configs).unwrap();
    let p = point("e,id=m kwh=12.5,o=0,p=0 1");
    let Mapped::Command(Command::RecordReading { reading, .. }) = mapper.map(&p, 0).unwrap() else {
        panic!("not a reading")
    };
    assert_eq!(reading.import_wh, 12.5);
}
