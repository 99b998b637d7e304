//! SunSpec: finding the register map, walking its model chain, and the points gridlog reads
//! from each model it knows. Pure: the poller does the reading and hands the words here.
//!
//! A SunSpec map starts with the marker `SunS` (0x5375 0x6E53) at one of a few well-known
//! addresses ([`BASE_ADDRESSES`]); after it come models, each a header (model id, length in
//! registers) and a body, until the end model (id 0xFFFF). Every length read from a device
//! is checked before it is used: the chain is at most [`MODELS_MAX`] models, a model at most
//! [`MODEL_REGISTERS_MAX`] registers, and no model may run past the 16-bit address space.
//! Addresses only grow (checked arithmetic, no wrap), so a chain cannot loop back on itself;
//! a device that claims one gets [`ChainError::RunsPastMap`] or [`ChainError::TooManyModels`].
//!
//! Each model gridlog maps is read with ONE request ([`ModelMap::window_registers`]) that
//! holds every value and the scale factors that scale them: a device may change a scale
//! factor at run time, and a value read with another request's scale factor is wrong by a
//! power of ten.

use super::decode::{self, ByteOrder, Missing, RegisterType};

/// The marker that opens a SunSpec map: "SunS".
pub const MARKER: [u16; 2] = [0x5375, 0x6E53];
/// Where a SunSpec map may start, probed in this order.
pub const BASE_ADDRESSES: [u16; 3] = [40000, 0, 50000];
/// The id of the model that ends the chain.
pub const END_MODEL_ID: u16 = 0xFFFF;
/// Most models in one chain (real devices have fewer than 20); a longer chain is refused.
pub const MODELS_MAX: usize = 64;
/// Longest model accepted, in registers (the longest published model is under 1,000).
pub const MODEL_REGISTERS_MAX: u16 = 2_048;
/// Most registers one read may ask for (Modbus: 125 holding registers per request).
pub const READ_REGISTERS_MAX: u16 = 125;

/// One model found in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelAt {
    /// The model id.
    pub id: u16,
    /// The address of its first body register (after the two header registers).
    pub body_address: u16,
    /// Its body's length in registers, as the device declares it.
    pub registers: u16,
}

/// A chain that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// More models than [`MODELS_MAX`] before the end model.
    #[error("more than {max} models before the end model")]
    TooManyModels {
        /// The limit.
        max: usize,
    },
    /// A model longer than [`MODEL_REGISTERS_MAX`].
    #[error(
        "model {model} at register {address} declares {registers} registers; the maximum is {max}"
    )]
    ModelTooLong {
        /// The model id.
        model: u16,
        /// Its header's address.
        address: u16,
        /// The declared length.
        registers: u16,
        /// The limit.
        max: u16,
    },
    /// A model whose declared length runs past the last address (65535).
    #[error(
        "model {model} at register {address} with {registers} registers runs past the register map"
    )]
    RunsPastMap {
        /// The model id.
        model: u16,
        /// Its header's address.
        address: u16,
        /// The declared length.
        registers: u16,
    },
}

/// What to do after a header was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read the next header at this address.
    Next(u16),
    /// The end model was read: the chain is complete.
    End,
}

/// Walks a model chain one header at a time: the poller reads the two registers at
/// [`ChainWalk::header_address`] and passes them to [`ChainWalk::step`].
#[derive(Debug, Clone)]
pub struct ChainWalk {
    next: u16,
    models: Vec<ModelAt>,
}

impl ChainWalk {
    /// A walk of the map whose marker is at `base`; `None` if no header fits after it.
    pub fn new(base: u16) -> Option<ChainWalk> {
        Some(ChainWalk {
            next: base.checked_add(2)?,
            models: Vec::new(),
        })
    }

    /// Where the next header is.
    pub fn header_address(&self) -> u16 {
        self.next
    }

    /// The models found so far (all of them once [`Step::End`] was returned).
    pub fn models(&self) -> &[ModelAt] {
        &self.models
    }

    /// Takes the header `(id, registers)` read at [`ChainWalk::header_address`].
    pub fn step(&mut self, id: u16, registers: u16) -> Result<Step, ChainError> {
        let address = self.next;
        if id == END_MODEL_ID {
            return Ok(Step::End);
        }
        if self.models.len() >= MODELS_MAX {
            return Err(ChainError::TooManyModels { max: MODELS_MAX });
        }
        if registers > MODEL_REGISTERS_MAX {
            return Err(ChainError::ModelTooLong {
                model: id,
                address,
                registers,
                max: MODEL_REGISTERS_MAX,
            });
        }
        let past = ChainError::RunsPastMap {
            model: id,
            address,
            registers,
        };
        let body_address = address.checked_add(2).ok_or(past.clone())?;
        // The next header must fit too (at least the end model's id).
        let next = body_address.checked_add(registers).ok_or(past)?;
        self.models.push(ModelAt {
            id,
            body_address,
            registers,
        });
        self.next = next;
        Ok(Step::Next(next))
    }
}

/// A point of a model: where it is in the body, its type, and its scale factor's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Offset in the model's body.
    pub offset: u16,
    /// Its type.
    pub ty: RegisterType,
    /// The offset of its `sunssf` in the same body, if it has one.
    pub scale_factor: Option<u16>,
}

const fn int(offset: u16, ty: RegisterType, scale_factor: u16) -> Point {
    Point {
        offset,
        ty,
        scale_factor: Some(scale_factor),
    }
}

const fn float(offset: u16) -> Point {
    Point {
        offset,
        ty: RegisterType::F32,
        scale_factor: None,
    }
}

const fn plain(offset: u16, ty: RegisterType) -> Point {
    Point {
        offset,
        ty,
        scale_factor: None,
    }
}

/// The points gridlog reads from a meter model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterPoints {
    /// `TotWhImp`.
    pub import_wh: Point,
    /// `TotWhExp`.
    pub export_wh: Point,
    /// `W` (positive = import).
    pub power_w: Point,
    /// `PhV` (line-to-neutral average).
    pub voltage_v: Point,
    /// `A` (total).
    pub current_a: Point,
    /// `VAR`.
    pub reactive_power_var: Point,
}

/// The points gridlog reads from an inverter model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InverterPoints {
    /// `W` (AC output).
    pub power_w: Point,
    /// `WH` (lifetime energy; `TotWhInj` in model 701).
    pub energy_wh: Point,
    /// `St`, the operating state.
    pub state: Point,
    /// How `St` is numbered.
    pub states: StateNames,
}

/// How a model numbers its operating states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateNames {
    /// Models 101–103: 1 off … 8 standby.
    Inverter,
    /// Model 701: 0 off, 1 on.
    Der,
}

impl StateNames {
    /// The status label of state `value`.
    pub fn name(self, value: u16) -> &'static str {
        match (self, value) {
            (StateNames::Inverter, 1) | (StateNames::Der, 0) => "off",
            (StateNames::Inverter, 2) => "sleeping",
            (StateNames::Inverter, 3) => "starting",
            (StateNames::Inverter, 4) => "mppt",
            (StateNames::Inverter, 5) => "throttled",
            (StateNames::Inverter, 6) => "shutting_down",
            (StateNames::Inverter, 7) => "fault",
            (StateNames::Inverter, 8) => "standby",
            (StateNames::Der, 1) => "on",
            _ => "unknown",
        }
    }
}

/// What gridlog does with a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelRole {
    /// Model 1: the device's identity (`Mn`, `SN`).
    Common,
    /// A meter.
    Meter(MeterPoints),
    /// An inverter.
    Inverter(InverterPoints),
}

/// A model gridlog knows: its role and the registers one poll reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelMap {
    /// The model id.
    pub id: u16,
    /// What it is for.
    pub role: ModelRole,
    /// How many registers from the body's start one read takes: every point and scale
    /// factor above lies within them.
    pub window_registers: u16,
}

/// `Mn` in model 1: 16 registers of text.
pub const COMMON_MANUFACTURER: (u16, u16) = (0, 16);
/// `SN` in model 1.
pub const COMMON_SERIAL: (u16, u16) = (48, 16);

/// Models 201–204 (integer with scale factors; acc32 energy).
const INT_METER: MeterPoints = MeterPoints {
    current_a: int(0, RegisterType::I16, 4),
    voltage_v: int(5, RegisterType::I16, 13),
    power_w: int(16, RegisterType::I16, 20),
    reactive_power_var: int(26, RegisterType::I16, 30),
    export_wh: int(36, RegisterType::Acc32, 52),
    import_wh: int(44, RegisterType::Acc32, 52),
};

/// Models 211–214 (float32, no scale factors).
const FLOAT_METER: MeterPoints = MeterPoints {
    current_a: float(0),
    voltage_v: float(8),
    power_w: float(26),
    reactive_power_var: float(42),
    export_wh: float(58),
    import_wh: float(66),
};

/// Models 101–103.
const INVERTER: InverterPoints = InverterPoints {
    power_w: int(12, RegisterType::I16, 13),
    energy_wh: int(22, RegisterType::Acc32, 24),
    state: plain(36, RegisterType::U16),
    states: StateNames::Inverter,
};

/// Model 701 (DER AC measurement).
const DER_AC: InverterPoints = InverterPoints {
    power_w: int(8, RegisterType::I16, 114),
    energy_wh: int(17, RegisterType::U64, 118),
    state: plain(1, RegisterType::U16),
    states: StateNames::Der,
};

/// The map of model `id`, if gridlog reads it.
pub fn model_map(id: u16) -> Option<ModelMap> {
    let (role, window_registers) = match id {
        1 => (ModelRole::Common, 64),
        101..=103 => (ModelRole::Inverter(INVERTER), 37),
        201..=204 => (ModelRole::Meter(INT_METER), 53),
        211..=214 => (ModelRole::Meter(FLOAT_METER), 68),
        701 => (ModelRole::Inverter(DER_AC), 119),
        _ => return None,
    };
    Some(ModelMap {
        id,
        role,
        window_registers,
    })
}

const _: () = assert!(INT_METER.import_wh.offset + 2 <= 53);
const _: () = assert!(FLOAT_METER.import_wh.offset + 2 <= 68);
const _: () = assert!(INVERTER.state.offset < 37);
const _: () = assert!(118 < 119 && 119 <= READ_REGISTERS_MAX);

/// A point's value from a model's words, scaled; `None` if absent (not implemented, or its
/// scale factor is). `words` is the model's window from the body's start.
pub fn point_value(words: &[u16], point: Point) -> Option<f64> {
    let at = words.get(usize::from(point.offset)..)?;
    let raw = decode::decode(at, point.ty, ByteOrder::Abcd, Missing::SunSpec)?.value()?;
    match point.scale_factor {
        Some(sf_offset) => {
            let sf = decode::scale_factor(*words.get(usize::from(sf_offset))?)?;
            Some(decode::apply_scale_factor(raw, sf))
        }
        None => Some(raw),
    }
}

/// Whether one count of `point` is at most 1 Wh: its scale factor, if it has one, is 0 or
/// negative (or not readable: the value is then absent anyway). The engine's register width
/// is in Wh, so only such an acc32 may be registered as a 32-bit register: 2^32 counts of
/// 10 Wh would be refused from 2^32 Wh on.
pub fn counts_at_most_wh(words: &[u16], point: Point) -> bool {
    let Some(sf_offset) = point.scale_factor else {
        return true;
    };
    words
        .get(usize::from(sf_offset))
        .and_then(|w| decode::scale_factor(*w))
        .is_none_or(|sf| sf <= 0)
}

/// Text from registers (two ASCII bytes each, NUL padded), trimmed.
pub fn text(words: &[u16]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

#[cfg(test)]
mod tests;
