use super::*;

/// A register image: the marker at `base`, then `models` (id, body), then the end model.
fn image(base: u16, models: &[(u16, Vec<u16>)]) -> Vec<(u16, u16)> {
    let mut words = vec![MARKER[0], MARKER[1]];
    for (id, body) in models {
        words.push(*id);
        words.push(u16::try_from(body.len()).unwrap());
        words.extend(body);
    }
    words.extend([END_MODEL_ID, 0]);
    words
        .into_iter()
        .enumerate()
        .map(|(i, w)| (base + u16::try_from(i).unwrap(), w))
        .collect()
}

fn read(image: &[(u16, u16)], address: u16) -> (u16, u16) {
    let at = |a: u16| image.iter().find(|(x, _)| *x == a).map_or(0, |(_, w)| *w);
    (at(address), at(address + 1))
}

/// Walks `image` as the poller does.
fn walk(image: &[(u16, u16)], base: u16) -> Result<Vec<ModelAt>, ChainError> {
    let mut walk = ChainWalk::new(base).unwrap();
    loop {
        let (id, len) = read(image, walk.header_address());
        match walk.step(id, len)? {
            Step::Next(_) => continue,
            Step::End => return Ok(walk.models().to_vec()),
        }
    }
}

#[test]
fn a_chain_is_walked_to_its_end_model() {
    let img = image(
        40000,
        &[(1, vec![0; 66]), (203, vec![0; 105]), (103, vec![0; 50])],
    );
    let models = walk(&img, 40000).unwrap();
    assert_eq!(
        models,
        vec![
            ModelAt {
                id: 1,
                body_address: 40004,
                registers: 66
            },
            ModelAt {
                id: 203,
                body_address: 40072,
                registers: 105
            },
            ModelAt {
                id: 103,
                body_address: 40179,
                registers: 50
            },
        ]
    );
}

#[test]
fn a_model_running_past_the_address_space_is_refused() {
    // A length that would wrap the next header's address back to the start (a loop).
    let mut walk = ChainWalk::new(40000).unwrap();
    assert_eq!(walk.step(1, 66), Ok(Step::Next(40070)));
    assert_eq!(
        walk.step(203, MODEL_REGISTERS_MAX),
        Ok(Step::Next(40072 + MODEL_REGISTERS_MAX))
    );
    let mut walk = ChainWalk::new(65000).unwrap();
    let e = walk.step(203, 1000).unwrap_err();
    assert_eq!(
        e,
        ChainError::RunsPastMap {
            model: 203,
            address: 65002,
            registers: 1000
        }
    );
    assert!(e.to_string().contains("model 203 at register 65002"), "{e}");
    assert!(ChainWalk::new(65534).is_none());
}

#[test]
fn a_model_longer_than_the_limit_is_refused_before_it_is_used() {
    let mut walk = ChainWalk::new(0).unwrap();
    let e = walk.step(64_000, MODEL_REGISTERS_MAX + 1).unwrap_err();
    assert!(
        matches!(
            e,
            ChainError::ModelTooLong {
                model: 64_000,
                address: 2,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_chain_that_never_ends_stops_at_the_models_limit() {
    // Zero-length models forever: every header is new, so only the count stops it.
    let mut walk = ChainWalk::new(0).unwrap();
    let mut steps = 0;
    let e = loop {
        match walk.step(7, 0) {
            Ok(Step::Next(_)) => steps += 1,
            Ok(Step::End) => panic!("no end model was given"),
            Err(e) => break e,
        }
    };
    assert_eq!(steps, MODELS_MAX);
    assert_eq!(e, ChainError::TooManyModels { max: MODELS_MAX });
}

/// A model 203 body with the given raw values.
fn meter_203(w: i16, w_sf: i16, imp: u32, exp: u32, wh_sf: i16) -> Vec<u16> {
    let mut body = vec![0u16; 105];
    body[0] = 125; // A
    body[4] = (-1i16) as u16; // A_SF
    body[5] = 2301; // PhV
    body[13] = (-1i16) as u16; // V_SF
    body[16] = w as u16;
    body[20] = w_sf as u16;
    body[26] = 0x8000; // VAR not implemented
    body[30] = 0;
    body[36] = (exp >> 16) as u16;
    body[37] = exp as u16;
    body[44] = (imp >> 16) as u16;
    body[45] = imp as u16;
    body[52] = wh_sf as u16;
    body
}

/// Model 203's points and window.
fn model_203() -> (MeterPoints, u16) {
    let Some(ModelMap {
        role: ModelRole::Meter(p),
        window_registers,
        ..
    }) = model_map(203)
    else {
        panic!("203 is a meter")
    };
    (p, window_registers)
}

#[test]
fn meter_points_are_read_with_their_scale_factors() {
    let (p, window_registers) = model_203();
    let body = meter_203(1234, 1, 123_456, 7, -1);
    let window = &body[..usize::from(window_registers)];
    assert_eq!(point_value(window, p.power_w), Some(12_340.0));
    assert_eq!(point_value(window, p.import_wh), Some(12_345.6));
    assert_eq!(point_value(window, p.export_wh), Some(0.7));
    assert_eq!(point_value(window, p.voltage_v), Some(230.1));
    assert_eq!(point_value(window, p.current_a), Some(12.5));
    assert_eq!(
        point_value(window, p.reactive_power_var),
        None,
        "0x8000 is absent"
    );
}

#[test]
fn only_counts_of_at_most_one_wh_fit_a_32_bit_register() {
    let (p, window_registers) = model_203();
    let at_most_wh = |wh_sf: i16| {
        let body = meter_203(0, 0, 1, 1, wh_sf);
        counts_at_most_wh(&body[..usize::from(window_registers)], p.import_wh)
    };
    assert!(at_most_wh(0));
    assert!(at_most_wh(-2), "0.01 Wh counts");
    assert!(!at_most_wh(1), "10 Wh counts");
    assert!(!at_most_wh(3), "kWh counts");
    assert!(
        at_most_wh(i16::MIN),
        "not implemented: the value is absent anyway"
    );
}

#[test]
fn a_not_implemented_scale_factor_or_accumulator_makes_the_point_absent() {
    let Some(ModelMap {
        role: ModelRole::Meter(p),
        ..
    }) = model_map(203)
    else {
        panic!()
    };
    let body = meter_203(1234, i16::MIN, 0, 7, 0);
    assert_eq!(point_value(&body, p.power_w), None, "W_SF 0x8000");
    assert_eq!(
        point_value(&body, p.import_wh),
        None,
        "acc32 0 is not a reading of 0"
    );
    assert_eq!(point_value(&body, p.export_wh), Some(7.0));
}

#[test]
fn float_meters_and_inverters_are_mapped() {
    let Some(ModelMap {
        role: ModelRole::Meter(p),
        ..
    }) = model_map(213)
    else {
        panic!()
    };
    let mut body = vec![0u16; 124];
    let [hi, lo] = [
        (1500.5f32.to_bits() >> 16) as u16,
        1500.5f32.to_bits() as u16,
    ];
    body[26] = hi;
    body[27] = lo;
    assert_eq!(point_value(&body, p.power_w), Some(1500.5));
    let Some(ModelMap {
        role: ModelRole::Inverter(inv),
        ..
    }) = model_map(103)
    else {
        panic!()
    };
    let mut body = vec![0u16; 50];
    body[12] = 4200;
    body[13] = 0;
    body[22] = 1;
    body[23] = 0;
    body[24] = 0;
    body[36] = 4;
    assert_eq!(point_value(&body, inv.power_w), Some(4200.0));
    assert_eq!(point_value(&body, inv.energy_wh), Some(65_536.0));
    assert_eq!(
        inv.states
            .name(point_value(&body, inv.state).unwrap() as u16),
        "mppt"
    );
    assert!(model_map(701).is_some());
    assert!(model_map(120).is_none(), "nameplate is not read");
}

#[test]
fn every_mapped_point_lies_within_its_window() {
    for id in [
        1, 101, 102, 103, 201, 202, 203, 204, 211, 212, 213, 214, 701,
    ] {
        let map = model_map(id).unwrap();
        assert!(map.window_registers <= READ_REGISTERS_MAX, "{id}");
        let points: Vec<Point> = match map.role {
            ModelRole::Common => vec![],
            ModelRole::Meter(m) => vec![
                m.import_wh,
                m.export_wh,
                m.power_w,
                m.voltage_v,
                m.current_a,
                m.reactive_power_var,
            ],
            ModelRole::Inverter(i) => vec![i.power_w, i.energy_wh, i.state],
        };
        for p in points {
            assert!(
                p.offset + p.ty.registers() <= map.window_registers,
                "{id}: {p:?}"
            );
            assert!(
                p.scale_factor.is_none_or(|sf| sf < map.window_registers),
                "{id}: {p:?}"
            );
        }
    }
}

#[test]
fn text_is_trimmed_at_the_first_nul() {
    let words = [
        u16::from_be_bytes(*b"Ac"),
        u16::from_be_bytes(*b"me"),
        0,
        u16::from_be_bytes(*b"xx"),
    ];
    assert_eq!(text(&words), "Acme");
}
