//! `registers = [...]`: explicit points of a device without SunSpec, checked, grouped into
//! reads, and decoded into [`Values`]. Pure.
//!
//! Points are grouped into as few reads as fit [`READ_REGISTERS_MAX`] registers, joining two
//! only across a gap of at most [`READ_GAP_REGISTERS_MAX`] unmapped registers (a device may
//! refuse a read that touches a hole in its map), and only within one [`Table`]. A point
//! with a `scale_register` is always in the same read as that register, so value and scale
//! factor come from one answer.

use gridlog_common::domain::{AssetKind, MeterKind};
use gridlog_common::id::EntityId;

use super::decode::{self, ByteOrder, Missing, RegisterType};
use super::mapping::Values;
use super::sunspec::READ_REGISTERS_MAX;
use crate::ingest::fields::{factor, GridField, Target, UnitError};

/// Most points of one device.
pub const POINTS_MAX: usize = 64;
/// Most unmapped registers one read may span between two points.
pub const READ_GAP_REGISTERS_MAX: u16 = 8;

/// Which of a device's register tables a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Holding registers (function 3).
    Holding,
    /// Input registers (function 4).
    Input,
}

/// One checked point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegisterPoint {
    /// The gridlog field.
    pub field: GridField,
    /// Its first register.
    pub address: u16,
    /// Its type.
    pub ty: RegisterType,
    /// Its byte order.
    pub order: ByteOrder,
    /// Unit and scale, multiplied in.
    pub factor: f64,
    /// Its scale factor register, if any (in the same table).
    pub scale_register: Option<u16>,
    /// Its table.
    pub table: Table,
}

impl RegisterPoint {
    /// The registers one read must cover for it: `(first, past_last)`.
    fn span(&self) -> (u32, u32) {
        let start = u32::from(self.address);
        let end = start + u32::from(self.ty.registers());
        match self.scale_register.map(u32::from) {
            Some(s) => (start.min(s), end.max(s + 1)),
            None => (start, end),
        }
    }
}

/// One read: `count` holding registers from `address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// Holding or input registers.
    pub table: Table,
    /// First register.
    pub address: u16,
    /// How many.
    pub count: u16,
}

/// A device's checked register map.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterMap {
    /// The entity.
    pub id: EntityId,
    /// Meter or asset.
    pub target: Target,
    /// The meter's kind (`target = "meter"`).
    pub meter_kind: MeterKind,
    /// The asset's kind and rated power (`target = "asset"`).
    pub asset: Option<(AssetKind, f64)>,
    points: Vec<RegisterPoint>,
    reads: Vec<Read>,
}

/// A register map that cannot be used; each names the register.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterMapError {
    /// More points than [`POINTS_MAX`].
    #[error("{count} registers; the maximum is {max}")]
    TooMany {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A type that is not one of the known ones.
    #[error("register {address}: unknown type {ty:?} (u16, i16, u32, i32, u64, f32, acc32)")]
    UnknownType {
        /// The register.
        address: u16,
        /// The type given.
        ty: String,
    },
    /// A byte order that is not one of the known ones.
    #[error("register {address}: unknown byte_order {order:?} (ABCD, CDAB, BADC, DCBA)")]
    UnknownByteOrder {
        /// The register.
        address: u16,
        /// The order given.
        order: String,
    },
    /// A field gridlog does not have for the target, or one that is not a number.
    #[error("register {address}: {field:?} is not a numeric {target:?} field")]
    UnknownField {
        /// The register.
        address: u16,
        /// The field.
        field: String,
        /// The target.
        target: Target,
    },
    /// Two points for one field.
    #[error("register {address}: field {field} is already read from register {other}")]
    DuplicateField {
        /// The register.
        address: u16,
        /// The field.
        field: &'static str,
        /// The register that already fills it.
        other: u16,
    },
    /// A field the target needs is not read.
    #[error("field {field} is required")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A bad unit or scale.
    #[error("register {address}: {reason}")]
    BadUnit {
        /// The register.
        address: u16,
        /// What is wrong.
        reason: UnitError,
    },
    /// Both `scale` and `scale_register`.
    #[error("register {address}: give scale or scale_register, not both")]
    ScaleTwice {
        /// The register.
        address: u16,
    },
    /// Two points (or a point and a scale register) share a register.
    #[error("register {address} overlaps register {other}")]
    Overlap {
        /// The register.
        address: u16,
        /// The other.
        other: u16,
    },
    /// A value past register 65535, or a scale register too far from its value to be read
    /// in one request.
    #[error("register {address}: {reason}")]
    OutOfReach {
        /// The register.
        address: u16,
        /// What is wrong.
        reason: String,
    },
}

fn check_point(
    config: &super::config::RegisterConfig,
    target: Target,
) -> Result<RegisterPoint, RegisterMapError> {
    let address = config.address;
    let ty = RegisterType::from_name(&config.ty).ok_or_else(|| RegisterMapError::UnknownType {
        address,
        ty: config.ty.clone(),
    })?;
    let order = ByteOrder::from_name(&config.byte_order).ok_or_else(|| {
        RegisterMapError::UnknownByteOrder {
            address,
            order: config.byte_order.clone(),
        }
    })?;
    let field = GridField::named(target, &config.field)
        .filter(|f| *f != GridField::Status)
        .ok_or_else(|| RegisterMapError::UnknownField {
            address,
            field: config.field.clone(),
            target,
        })?;
    if config.scale.is_some() && config.scale_register.is_some() {
        return Err(RegisterMapError::ScaleTwice { address });
    }
    let factor = factor(field, config.unit.as_deref(), config.scale)
        .map_err(|reason| RegisterMapError::BadUnit { address, reason })?;
    let point = RegisterPoint {
        field,
        address,
        ty,
        order,
        factor,
        scale_register: config.scale_register,
        table: if config.input {
            Table::Input
        } else {
            Table::Holding
        },
    };
    let (start, end) = point.span();
    if u32::from(address) + u32::from(ty.registers()) > 0x1_0000 {
        return Err(RegisterMapError::OutOfReach {
            address,
            reason: "runs past register 65535".into(),
        });
    }
    if end - start > u32::from(READ_REGISTERS_MAX) {
        return Err(RegisterMapError::OutOfReach {
            address,
            reason: format!("scale_register is more than {READ_REGISTERS_MAX} registers away to be read in the same request"),
        });
    }
    Ok(point)
}

/// Registers `(first, past_last, owner)` that values and scale registers occupy.
fn occupied(points: &[RegisterPoint]) -> Vec<(u32, u32, u16)> {
    let mut used: Vec<(u32, u32, u16)> = points
        .iter()
        .map(|p| {
            (
                u32::from(p.address),
                u32::from(p.address) + u32::from(p.ty.registers()),
                p.address,
            )
        })
        .collect();
    used.sort_unstable();
    used
}

fn check_overlaps(points: &[RegisterPoint]) -> Result<(), RegisterMapError> {
    for table in [Table::Holding, Table::Input] {
        let of_table: Vec<RegisterPoint> = points
            .iter()
            .copied()
            .filter(|p| p.table == table)
            .collect();
        check_table_overlaps(&of_table)?;
    }
    Ok(())
}

/// Overlaps among `points`, all of one table.
fn check_table_overlaps(points: &[RegisterPoint]) -> Result<(), RegisterMapError> {
    let used = occupied(points);
    for pair in used.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(RegisterMapError::Overlap {
                address: pair[1].2,
                other: pair[0].2,
            });
        }
    }
    for p in points {
        if let Some(s) = p.scale_register {
            if let Some(&(_, _, owner)) = used
                .iter()
                .find(|(a, b, _)| (*a..*b).contains(&u32::from(s)))
            {
                return Err(RegisterMapError::Overlap {
                    address: s,
                    other: owner,
                });
            }
        }
    }
    Ok(())
}

/// Groups points (by table, sorted by span) into reads.
fn plan_reads(points: &[RegisterPoint]) -> Vec<Read> {
    let mut spans: Vec<(Table, u32, u32)> = points
        .iter()
        .map(|p| {
            let (start, end) = p.span();
            (p.table, start, end)
        })
        .collect();
    spans.sort_unstable();
    let mut reads: Vec<(Table, u32, u32)> = Vec::new();
    for (table, start, end) in spans {
        match reads.last_mut() {
            Some((of, first, past))
                if *of == table
                    && start <= *past + u32::from(READ_GAP_REGISTERS_MAX)
                    && end.max(*past) - *first <= u32::from(READ_REGISTERS_MAX) =>
            {
                *past = end.max(*past);
            }
            _ => reads.push((table, start, end)),
        }
    }
    reads
        .into_iter()
        // Spans lie within 0..=0x10000 and are at most READ_REGISTERS_MAX long (checked).
        .map(|(table, first, past)| Read {
            table,
            address: u16::try_from(first).unwrap_or(u16::MAX),
            count: u16::try_from(past - first).unwrap_or(READ_REGISTERS_MAX),
        })
        .collect()
}

impl RegisterMap {
    /// Checks `configs` for `target`.
    pub fn new(
        id: EntityId,
        target: Target,
        meter_kind: MeterKind,
        asset: Option<(AssetKind, f64)>,
        configs: &[super::config::RegisterConfig],
    ) -> Result<RegisterMap, RegisterMapError> {
        if configs.len() > POINTS_MAX {
            return Err(RegisterMapError::TooMany {
                count: configs.len(),
                max: POINTS_MAX,
            });
        }
        let mut points: Vec<RegisterPoint> = Vec::with_capacity(configs.len());
        for config in configs {
            let point = check_point(config, target)?;
            if let Some(other) = points.iter().find(|p| p.field == point.field) {
                return Err(RegisterMapError::DuplicateField {
                    address: point.address,
                    field: point.field.name(),
                    other: other.address,
                });
            }
            points.push(point);
        }
        check_overlaps(&points)?;
        for required in GridField::required(target) {
            if !points.iter().any(|p| p.field == *required) {
                return Err(RegisterMapError::MissingField {
                    field: required.name(),
                });
            }
        }
        let reads = plan_reads(&points);
        Ok(RegisterMap {
            id,
            target,
            meter_kind,
            asset,
            points,
            reads,
        })
    }

    /// The reads one poll makes, in order.
    pub fn reads(&self) -> &[Read] {
        &self.reads
    }

    /// Whether the meter is registered with 32-bit registers, so the engine records a wrap
    /// as a rollover: only if every energy register is an acc32 counting whole Wh (no unit,
    /// scale or scale register). The engine's register width is in Wh: an acc32 of 10 Wh
    /// counts wraps at 2^32 × 10 Wh, and a 32-bit registration would refuse its readings
    /// (and a scaled u32's beside it) from 2^32 Wh on. Such a meter is registered without a
    /// width: its wrap is refused (`register_decreased`) until a rollover is recorded.
    pub fn wraps_at_32_bits(&self) -> bool {
        let mut energy = self
            .points
            .iter()
            .filter(|p| matches!(p.field, GridField::ImportWh | GridField::ExportWh))
            .peekable();
        energy.peek().is_some()
            && energy.all(|p| {
                p.ty == RegisterType::Acc32 && p.factor == 1.0 && p.scale_register.is_none()
            })
    }

    /// The values in `answers`, one per [`RegisterMap::reads`] in order (each exactly as
    /// long as its read).
    pub fn values(&self, answers: &[Vec<u16>]) -> Values {
        let mut values = Values::default();
        for point in &self.points {
            let value = self.point_value(point, answers);
            let slot = match point.field {
                GridField::ImportWh => &mut values.import_wh,
                GridField::ExportWh => &mut values.export_wh,
                GridField::PowerW => &mut values.power_w,
                GridField::VoltageV => &mut values.voltage_v,
                GridField::CurrentA => &mut values.current_a,
                GridField::ReactivePowerVar => &mut values.reactive_power_var,
                GridField::SocPct => &mut values.soc_pct,
                GridField::Status => continue,
            };
            *slot = value;
        }
        values
    }

    fn point_value(&self, point: &RegisterPoint, answers: &[Vec<u16>]) -> Option<f64> {
        let (start, end) = point.span();
        let (read, words) = self.reads.iter().zip(answers).find(|(r, _)| {
            r.table == point.table
                && u32::from(r.address) <= start
                && end <= u32::from(r.address) + u32::from(r.count)
        })?;
        let at = |address: u16| usize::from(address - read.address);
        let raw = decode::decode(
            words.get(at(point.address)..)?,
            point.ty,
            point.order,
            Missing::Plain,
        )?
        .value()?;
        let scaled = match point.scale_register {
            Some(s) => decode::apply_scale_factor(raw, decode::scale_factor(*words.get(at(s))?)?),
            None => raw,
        };
        Some(scaled * point.factor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::RegisterConfig;
    use super::*;

    fn point(field: &str, address: u16, ty: &str) -> RegisterConfig {
        RegisterConfig {
            field: field.into(),
            address,
            ty: ty.into(),
            byte_order: "ABCD".into(),
            scale: None,
            scale_register: None,
            unit: None,
            input: false,
        }
    }

    fn read(table: Table, address: u16, count: u16) -> Read {
        Read {
            table,
            address,
            count,
        }
    }

    fn map(configs: &[RegisterConfig]) -> Result<RegisterMap, RegisterMapError> {
        RegisterMap::new(
            EntityId::new("m").unwrap(),
            Target::Meter,
            MeterKind::Grid,
            None,
            configs,
        )
    }

    fn meter_points() -> Vec<RegisterConfig> {
        vec![
            RegisterConfig {
                unit: Some("kWh".into()),
                ..point("import_wh", 0, "u32")
            },
            point("export_wh", 2, "acc32"),
            RegisterConfig {
                scale_register: Some(5),
                ..point("power_w", 4, "i16")
            },
            RegisterConfig {
                byte_order: "CDAB".into(),
                ..point("voltage_v", 300, "f32")
            },
        ]
    }

    #[test]
    fn only_whole_wh_acc32_energy_registers_make_a_32_bit_meter() {
        let energy = |import: RegisterConfig, export: RegisterConfig| {
            map(&[import, export, point("power_w", 4, "i16")])
                .unwrap()
                .wraps_at_32_bits()
        };
        let acc = |field, address| point(field, address, "acc32");
        assert!(energy(acc("import_wh", 0), acc("export_wh", 2)));
        let scaled = RegisterConfig {
            scale: Some(10.0),
            ..acc("import_wh", 0)
        };
        assert!(!energy(scaled, acc("export_wh", 2)));
        let kwh = RegisterConfig {
            unit: Some("kWh".into()),
            ..acc("import_wh", 0)
        };
        assert!(!energy(kwh, acc("export_wh", 2)));
        let with_sf = RegisterConfig {
            scale_register: Some(8),
            ..acc("import_wh", 0)
        };
        assert!(!energy(with_sf, acc("export_wh", 2)));
        assert!(!energy(point("import_wh", 0, "u32"), acc("export_wh", 2)));
    }

    #[test]
    fn points_are_grouped_into_reads_and_decoded_with_units_and_scale_registers() {
        let m = map(&meter_points()).unwrap();
        assert_eq!(
            m.reads(),
            &[read(Table::Holding, 0, 6), read(Table::Holding, 300, 2)]
        );
        // An acc32 beside a kWh register: no 32-bit registration (its import would be
        // refused from 2^32 Wh, about 4.3 GWh, on).
        assert!(!m.wraps_at_32_bits());
        let v230 = 230.5f32.to_bits();
        let answers = vec![
            vec![0, 12, 0, 0, (-1500i16) as u16, (-1i16) as u16],
            vec![v230 as u16, (v230 >> 16) as u16],
        ];
        let v = m.values(&answers);
        assert_eq!(v.import_wh, Some(12_000.0));
        assert_eq!(v.export_wh, None, "acc32 0 is absent");
        assert_eq!(v.power_w, Some(-150.0));
        assert_eq!(v.voltage_v, Some(230.5));
    }

    #[test]
    fn input_and_holding_registers_are_read_apart_and_may_share_addresses() {
        let mut points = meter_points();
        points[3] = RegisterConfig {
            input: true,
            ..point("voltage_v", 0, "u16")
        };
        let m = map(&points).unwrap();
        assert_eq!(
            m.reads(),
            &[read(Table::Holding, 0, 6), read(Table::Input, 0, 1)]
        );
        let answers = vec![vec![0, 12, 0, 1, 100, 0], vec![2301]];
        assert_eq!(m.values(&answers).voltage_v, Some(2301.0));
        assert_eq!(m.values(&answers).import_wh, Some(12_000.0));
    }

    #[test]
    fn an_absent_scale_register_makes_its_value_absent() {
        let m = map(&meter_points()).unwrap();
        let answers = vec![vec![0, 12, 0, 1, 100, 0x8000], vec![0, 0]];
        assert_eq!(m.values(&answers).power_w, None);
    }

    #[test]
    fn a_gap_wider_than_the_limit_or_a_read_past_the_maximum_splits_reads() {
        let mut points = meter_points();
        points[1].address = 2 + 2 + READ_GAP_REGISTERS_MAX + 1; // export after a gap
        points[3].address = 400;
        points[2].address = 200;
        points[2].scale_register = Some(200 + READ_REGISTERS_MAX - 1);
        let m = map(&points).unwrap();
        assert_eq!(m.reads().len(), 4, "{:?}", m.reads());
        assert!(m.reads().iter().all(|r| r.count <= READ_REGISTERS_MAX));
    }

    #[test]
    fn bad_maps_are_refused_naming_the_register() {
        let mut p = meter_points();
        p[1].address = 1;
        assert_eq!(
            map(&p),
            Err(RegisterMapError::Overlap {
                address: 1,
                other: 0
            })
        );
        let mut p = meter_points();
        p[2].scale_register = Some(3);
        assert_eq!(
            map(&p),
            Err(RegisterMapError::Overlap {
                address: 3,
                other: 2
            })
        );
        let mut p = meter_points();
        p[1].ty = "u24".into();
        assert!(matches!(
            map(&p),
            Err(RegisterMapError::UnknownType { address: 2, .. })
        ));
        let mut p = meter_points();
        p[1].byte_order = "AB".into();
        assert!(matches!(
            map(&p),
            Err(RegisterMapError::UnknownByteOrder { address: 2, .. })
        ));
        let mut p = meter_points();
        p[3].field = "soc_pct".into();
        assert!(matches!(
            map(&p),
            Err(RegisterMapError::UnknownField { address: 300, .. })
        ));
        let mut p = meter_points();
        p[3].field = "power_w".into();
        assert!(matches!(
            map(&p),
            Err(RegisterMapError::DuplicateField {
                address: 300,
                other: 4,
                ..
            })
        ));
        let p = meter_points()[1..].to_vec();
        assert_eq!(
            map(&p),
            Err(RegisterMapError::MissingField { field: "import_wh" })
        );
        let mut p = meter_points();
        p[2].scale_register = Some(4 + READ_REGISTERS_MAX);
        assert!(matches!(
            map(&p),
            Err(RegisterMapError::OutOfReach { address: 4, .. })
        ));
        let mut p = meter_points();
        p[3].address = u16::MAX;
        assert!(matches!(
            map(&p),
            Err(RegisterMapError::OutOfReach {
                address: u16::MAX,
                ..
            })
        ));
        let mut p = meter_points();
        p[0].unit = Some("W".into());
        assert!(matches!(
            map(&p),
            Err(RegisterMapError::BadUnit { address: 0, .. })
        ));
        let p = vec![point("power_w", 0, "i16"); POINTS_MAX + 1];
        assert!(matches!(map(&p), Err(RegisterMapError::TooMany { .. })));
    }
}
