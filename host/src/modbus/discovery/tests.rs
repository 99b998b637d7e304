use super::*;
use crate::ingest::template::Template;

fn at(id: u16, body_address: u16, registers: u16) -> ModelAt {
    ModelAt {
        id,
        body_address,
        registers,
    }
}

fn naming(template: &Template) -> Naming<'_> {
    Naming {
        template,
        meter_kind: MeterKind::Grid,
        rated_power_w: Some(5000.0),
    }
}

#[test]
fn the_first_meter_and_inverter_models_are_read_and_others_skipped() {
    let models = [
        at(1, 40004, 66),
        at(120, 40072, 26),
        at(203, 40100, 105),
        at(201, 40207, 105),
        at(103, 40314, 50),
    ];
    let p = plan(&models).unwrap();
    assert_eq!(
        p.common,
        Window {
            model: 1,
            address: 40004,
            count: 64
        }
    );
    assert_eq!(
        p.meter.unwrap().0,
        Window {
            model: 203,
            address: 40100,
            count: 53
        }
    );
    assert_eq!(
        p.inverter.unwrap().0,
        Window {
            model: 103,
            address: 40314,
            count: 37
        }
    );
}

#[test]
fn unusable_chains_are_refused_with_a_reason() {
    assert_eq!(plan(&[at(203, 4, 105)]), Err(PlanError::NoCommonModel));
    assert_eq!(
        plan(&[at(1, 4, 66), at(120, 72, 26)]),
        Err(PlanError::NothingToPoll)
    );
    assert_eq!(
        plan(&[at(1, 4, 66), at(203, 72, 40)]),
        Err(PlanError::ModelTooShort {
            model: 203,
            address: 72,
            registers: 40,
            needed: 53
        })
    );
}

#[test]
fn entities_are_named_from_the_common_model_and_registered() {
    let p = plan(&[at(1, 4, 66), at(203, 72, 105), at(103, 179, 50)]).unwrap();
    let template = Template::parse("{Mn}-{SN}").unwrap();
    let (e, commands) = entities(&p, naming(&template), "Acme Power", "SN 42", true).unwrap();
    assert_eq!(
        e.meter.as_ref().unwrap().0.as_str(),
        "Acme_Power-SN_42-meter"
    );
    let (asset, pv, _) = e.inverter.as_ref().unwrap();
    assert_eq!(
        (asset.as_str(), pv.as_str()),
        ("Acme_Power-SN_42", "Acme_Power-SN_42-pv")
    );
    assert!(matches!(
        &commands[0],
        Command::RegisterMeter {
            register_bits: Some(32),
            kind: MeterKind::Grid,
            ..
        }
    ));
    assert!(matches!(
        &commands[1],
        Command::RegisterAsset {
            kind: AssetKind::PvInverter,
            ..
        }
    ));
    let no_rating = Naming {
        rated_power_w: None,
        ..naming(&template)
    };
    assert_eq!(
        entities(&p, no_rating, "A", "1", true),
        Err(PlanError::NoRatedPower { model: 103 })
    );
    let float_meter = plan(&[at(1, 4, 66), at(213, 72, 124)]).unwrap();
    let (e, commands) = entities(&float_meter, naming(&template), "A", "1", true).unwrap();
    assert_eq!(e.meter.unwrap().0.as_str(), "A-1");
    assert!(matches!(
        &commands[0],
        Command::RegisterMeter {
            register_bits: None,
            ..
        }
    ));
    assert!(
        entities(&float_meter, naming(&template), "", "", true).is_ok(),
        "\"-\" is an id"
    );
}

#[test]
fn a_poll_maps_meter_and_inverter_and_leaves_out_what_is_not_implemented() {
    let p = plan(&[at(1, 4, 66), at(203, 72, 105), at(103, 179, 50)]).unwrap();
    let template = Template::parse("dev").unwrap();
    let (e, _) = entities(&p, naming(&template), "A", "1", true).unwrap();
    let mut meter = vec![0u16; 53];
    meter[16] = 1500; // W, W_SF 0
    meter[37] = 10; // TotWhExp
    meter[44] = 0; // TotWhImp acc32 0: not implemented
    meter[45] = 0;
    let mut inverter = vec![0u16; 37];
    inverter[12] = 4200;
    inverter[23] = 900; // WH
    inverter[36] = 4;
    let (commands, absent) = poll_commands(&e, 1000, false, Some(&meter), Some(&inverter));
    assert_eq!(
        absent,
        vec![Absent { field: "import_wh" }],
        "no reading with a made-up import"
    );
    assert_eq!(commands.len(), 2);
    let Command::RecordTelemetry { telemetry, .. } = &commands[0] else {
        panic!()
    };
    assert_eq!(
        (telemetry.power_w, telemetry.status.as_str()),
        (4200.0, "mppt")
    );
    let Command::RecordReading { meter, reading } = &commands[1] else {
        panic!()
    };
    assert_eq!(meter.as_str(), "dev-pv");
    assert_eq!(
        (reading.import_wh, reading.export_wh, reading.power_w),
        (0.0, 900.0, -4200.0)
    );
}
